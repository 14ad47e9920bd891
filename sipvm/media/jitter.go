package media

import "github.com/pion/rtp"

// Jitter puts RTP packets back in sequence order. It holds up to Depth
// packets waiting for a missing one; beyond that the missing ones are
// given up as lost. Duplicates and packets older than what was already
// delivered are dropped. It does no timing of its own, so it is driven
// entirely by arriving packets (and Flush at the end), which keeps it
// deterministic.
type Jitter struct {
	// Depth is how many packets may wait for a missing one. Zero: 5
	// (100 ms of 20 ms packets).
	Depth int

	started bool
	next    uint16
	buf     map[uint16]*rtp.Packet
	seen    uint64 // bit i: packet next-1-i was delivered
	stats   JitterStats
}

// JitterStats counts what a Jitter saw.
type JitterStats struct {
	Received, Delivered, Duplicates, Late, Lost, Reordered, Resyncs int
}

// Frame is a packet delivered in order; Lost is how many packets were
// missing just before it (the gap to fill with silence).
type Frame struct {
	Packet *rtp.Packet
	Lost   int
}

// maxJump is how far ahead a sequence number may jump and still be taken
// as packets lost rather than a new stream (a restarted sender, garbage).
const maxJump = 500

// Stats returns the counts so far.
func (j *Jitter) Stats() JitterStats { return j.stats }

// Push adds p and returns the frames that are now in order.
func (j *Jitter) Push(p *rtp.Packet) []Frame {
	depth := j.Depth
	if depth <= 0 {
		depth = 5
	}
	if j.buf == nil {
		j.buf = map[uint16]*rtp.Packet{}
	}
	j.stats.Received++
	var out []Frame
	if !j.started {
		j.started, j.next = true, p.SequenceNumber
	}
	d := int16(p.SequenceNumber - j.next)
	switch {
	case int(d) > maxJump || int(d) < -maxJump:
		out = j.Flush()
		j.stats.Resyncs++
		j.next = p.SequenceNumber
		d = 0
	case d < 0:
		if -int(d) <= 64 && j.seen&(1<<(-int(d)-1)) != 0 {
			j.stats.Duplicates++
		} else {
			j.stats.Late++
		}
		return nil
	}
	if _, dup := j.buf[p.SequenceNumber]; dup {
		j.stats.Duplicates++
		return out
	}
	if p.SequenceNumber == j.next && len(j.buf) > 0 {
		j.stats.Reordered++ // a late one, filling the gap others waited on
	}
	j.buf[p.SequenceNumber] = p
	lost := 0
	for {
		if q, ok := j.buf[j.next]; ok {
			delete(j.buf, j.next)
			out = append(out, Frame{Packet: q, Lost: lost})
			j.stats.Delivered++
			lost = 0
			j.next++
			j.seen = j.seen<<1 | 1
			continue
		}
		if len(j.buf) <= depth {
			break
		}
		j.next++ // give the missing one up
		j.seen <<= 1
		lost++
		j.stats.Lost++
	}
	return out
}

// Flush returns every packet still held, in order, gaps counted as lost.
func (j *Jitter) Flush() []Frame {
	var out []Frame
	lost := 0
	for len(j.buf) > 0 {
		if q, ok := j.buf[j.next]; ok {
			delete(j.buf, j.next)
			out = append(out, Frame{Packet: q, Lost: lost})
			j.stats.Delivered++
			lost = 0
			j.seen = j.seen<<1 | 1
		} else {
			lost++
			j.stats.Lost++
			j.seen <<= 1
		}
		j.next++
	}
	return out
}
