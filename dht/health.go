package dht

import (
	"math/rand/v2"
	"sync"
	"time"
)

// PeerState is what the failure detector believes of a peer.
type PeerState int

const (
	Alive     PeerState = iota // answered recently
	Suspected                  // failed to answer; routed around but still probed
	Dead                       // failed DeadAfter times in a row; dropped from tables
)

func (s PeerState) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspected:
		return "suspected"
	case Dead:
		return "dead"
	}
	return "unknown"
}

// MarshalText names the state in JSON.
func (s PeerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// health is the detector's view of one peer.
type health struct {
	srtt, rttvar time.Duration
	hasRTT       bool
	state        PeerState
	fails        int
	since        time.Time // when state was entered
	lastOK       time.Time // last sign of life
	lastUse      time.Time
	left         time.Time // when it said it left (markLeft); zero: never
}

// leaveGrace is how long after a peer says it leaves no answer or call
// from it counts as a sign of life: answers to calls made before the
// leave, and the leaver's last maintenance calls, still arrive then, and
// would put it back into successor lists.
const leaveGrace = 2 * time.Second

// detector is the failure detector: RTT estimates as in TCP (RFC 6298),
// timeouts of srtt + 4·rttvar within [min, max] doubled after each
// failure, and the alive → suspected → dead states.
type detector struct {
	min, max, initial time.Duration
	deadAfter         int
	memory            time.Duration

	mu sync.Mutex
	m  map[ID]*health
}

func (d *detector) get(id ID, now time.Time) *health {
	h := d.m[id]
	if h == nil {
		h = &health{since: now}
		d.m[id] = h
	}
	h.lastUse = now
	return h
}

// timeout returns how long to wait for peer id's answer to a small call.
func (d *detector) timeout(id ID) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.m[id]
	rto := d.initial
	if h != nil && h.hasRTT {
		rto = h.srtt + 4*h.rttvar
	}
	if h != nil {
		for i := 0; i < h.fails && rto < d.max; i++ {
			rto *= 2
		}
	}
	return min(max(rto, d.min), d.max)
}

// ok records an answer from id after rtt (0: no RTT sample, e.g. an
// incoming call) and returns the state it left.
func (d *detector) ok(id ID, rtt time.Duration, now time.Time) (old PeerState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.get(id, now)
	if rtt > 0 {
		if !h.hasRTT {
			h.srtt, h.rttvar, h.hasRTT = rtt, rtt/2, true
		} else {
			diff := h.srtt - rtt
			if diff < 0 {
				diff = -diff
			}
			h.rttvar = (3*h.rttvar + diff) / 4
			h.srtt = (7*h.srtt + rtt) / 8
		}
	}
	old = h.state
	if !h.left.IsZero() && now.Sub(h.left) < leaveGrace {
		return old // a late sign of a peer that left
	}
	h.fails = 0
	h.lastOK = now
	if h.state != Alive {
		h.state, h.since = Alive, now
	}
	return old
}

// fail records a call to id that got no answer and returns the states
// before and after.
func (d *detector) fail(id ID, now time.Time) (old, cur PeerState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.get(id, now)
	old = h.state
	if h.state == Dead {
		return old, Dead // memory counts from the declaration of death
	}
	h.fails++
	switch {
	case h.fails >= d.deadAfter:
		h.state, h.since = Dead, now
	case h.state == Alive:
		h.state, h.since = Suspected, now
	}
	return old, h.state
}

// markDead records that id left or is known dead.
func (d *detector) markDead(id ID, now time.Time) (old PeerState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.get(id, now)
	old = h.state
	h.state, h.since, h.fails = Dead, now, d.deadAfter
	return old
}

// markLeft records that id said it leaves the ring: dead at once, and
// no sign of life counts for leaveGrace.
func (d *detector) markLeft(id ID, now time.Time) {
	d.markDead(id, now)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[id].left = now
}

// usable reports whether id may be routed to: not suspected or dead
// within memory. A peer learned second-hand that failed recently is not
// trusted again until it answers itself or the memory fades.
func (d *detector) usable(id ID, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.m[id]
	if h == nil {
		return true
	}
	if h.state == Alive {
		return true
	}
	return now.Sub(h.since) > d.memory
}

func (d *detector) stateOf(id ID) (PeerState, time.Duration, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.m[id]
	if h == nil {
		return Alive, 0, time.Time{}
	}
	return h.state, h.srtt, h.lastOK
}

// gc forgets peers not used for a while, keeping the table bounded.
func (d *detector) gc(now time.Time, idle time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, h := range d.m {
		if now.Sub(h.lastUse) > idle && (h.state != Dead || now.Sub(h.since) > d.memory) {
			delete(d.m, id)
		}
	}
}

// suspected lists the peers currently suspected.
func (d *detector) suspected() []ID {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []ID
	for id, h := range d.m {
		if h.state == Suspected {
			ids = append(ids, id)
		}
	}
	return ids
}

// Backoff spaces retries: attempt k (from 0) waits a uniformly random time
// in [0, min(Max, Initial·2^k)) ("full jitter"), so peers restarted
// together spread their retries instead of storming in step.
type Backoff struct {
	// Initial is the first retry's ceiling. Zero: 500ms.
	Initial time.Duration
	// Max caps the ceiling; retries then continue every [0, Max).
	// Zero: 5 minutes.
	Max time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = 500 * time.Millisecond
	}
	if b.Max == 0 {
		b.Max = 5 * time.Minute
	}
	return b
}

// Delay returns the wait before retry attempt (0-based), drawing from r.
func (b Backoff) Delay(attempt int, r *rand.Rand) time.Duration {
	b = b.withDefaults()
	ceil := b.Initial
	for i := 0; i < attempt && ceil < b.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.Max)
	return time.Duration(r.Int64N(int64(ceil) + 1))
}
