package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// FrameSamples is the samples in one 20 ms packet at 8 kHz.
const FrameSamples = 160

// Session is one RTP audio stream over a UDP socket: it sends G.711 in
// 20 ms packets and receives audio and telephone events. Replies go to
// where the other side's packets come from once they come (symmetric
// RTP, RFC 4961), else to the address of its SDP.
type Session struct {
	conn  net.PacketConn
	codec Codec
	dtmf  int

	mu     sync.Mutex
	remote net.Addr
	ssrc   uint32
	seq    uint16
	ts     uint32
	stats  Stats
}

// Stats counts a session's packets.
type Stats struct {
	Sent, Received, Garbage, Foreign int
	Jitter                           JitterStats
}

// NewSession makes a session on conn (which it does not close) sending to
// remote in codec, with dtmf the telephone-event payload type (-1: none).
func NewSession(conn net.PacketConn, remote net.Addr, codec Codec, dtmf int) *Session {
	var b [8]byte
	rand.Read(b[:])
	return &Session{conn: conn, codec: codec, dtmf: dtmf, remote: remote,
		ssrc: binary.BigEndian.Uint32(b[:]), seq: binary.BigEndian.Uint16(b[4:]), ts: uint32(b[6])<<8 | uint32(b[7])}
}

// Codec returns the session's codec.
func (s *Session) Codec() Codec { return s.codec }

// Remote returns where packets are sent.
func (s *Session) Remote() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote
}

// Stats returns the counts so far.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Session) send(pt uint8, marker bool, payload []byte, ts uint32) error {
	s.mu.Lock()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: marker,
		SequenceNumber: s.seq, Timestamp: ts, SSRC: s.ssrc}, Payload: payload}
	s.seq++
	s.stats.Sent++
	to := s.remote
	s.mu.Unlock()
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	if to == nil {
		return nil
	}
	if _, err := s.conn.WriteTo(b, to); err != nil {
		return fmt.Errorf("media: send RTP to %s: %w", to, err)
	}
	return nil
}

// Play sends pcm as 20 ms packets in real time (a short last packet
// is padded with silence) and returns when all are sent or ctx ends.
func (s *Session) Play(ctx context.Context, pcm []int16) error {
	return s.PlayFrom(ctx, bytes.NewReader(PCMBytes(nil, pcm)))
}

// PlayFrom sends the 16-bit little-endian samples read from r as 20 ms
// packets in real time, reading each packet's samples just before it is
// due (so r may be a stream still being fetched), until r ends (nil), r
// fails or ctx ends.
func (s *Session) PlayFrom(ctx context.Context, r io.Reader) error {
	var start time.Time
	t := time.NewTimer(0)
	defer t.Stop()
	buf := make([]byte, 2*FrameSamples)
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, buf)
		if n == 0 {
			if err == io.EOF {
				return nil
			}
			return err
		}
		clear(buf[n:])
		if i == 0 {
			start = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		s.mu.Lock()
		ts := s.ts
		s.ts += FrameSamples
		s.mu.Unlock()
		if err := s.send(s.codec.PayloadType, i == 0, s.codec.Encode(nil, BytesPCM(buf)), ts); err != nil {
			return err
		}
		t.Reset(time.Until(start.Add(time.Duration(i+1) * 20 * time.Millisecond)))
		if err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return err
		}
	}
}

// SendDigit sends key d as an RFC 4733 event of length dur: a packet per
// 20 ms, then the end packet three times, as phones do.
func (s *Session) SendDigit(ctx context.Context, d rune, dur time.Duration) error {
	code, ok := DigitCode(d)
	if !ok || s.dtmf < 0 {
		return fmt.Errorf("media: cannot send key %q (telephone-event %d)", d, s.dtmf)
	}
	s.mu.Lock()
	ts := s.ts
	s.mu.Unlock()
	n := max(1, int(dur/(20*time.Millisecond)))
	for i := range n {
		e := Event{Code: code, Volume: 10, Duration: uint16((i + 1) * FrameSamples)}
		if err := s.send(uint8(s.dtmf), i == 0, e.Marshal(), ts); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	e := Event{Code: code, Volume: 10, End: true, Duration: uint16(n * FrameSamples)}
	for range 3 {
		if err := s.send(uint8(s.dtmf), false, e.Marshal(), ts); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.ts += uint32(n * FrameSamples)
	s.mu.Unlock()
	return nil
}

// Sink receives what a session hears. Both are called from Receive's
// goroutine, in order.
type Sink struct {
	// Audio gets decoded samples in sequence order, lost packets filled
	// with silence. Nil: audio is dropped.
	Audio func(pcm []int16)
	// Digit gets each key pressed. Nil: keys are dropped.
	Digit func(d rune)
	// Packet is called for every valid RTP packet of the stream, before
	// it is ordered (a liveness signal). Nil: not called.
	Packet func()
}

// ErrClosed is returned by Receive when its socket was closed.
var ErrClosed = errors.New("media: RTP socket closed")

// Receive reads RTP until ctx ends (it then returns nil) or the socket
// fails, handing audio and keys to sink. Packets that do not parse as
// RTP version 2, or carry a payload type the session did not agree on,
// are counted and dropped. The first valid packet fixes the source: the
// session then sends there (symmetric RTP) and ignores other sources.
func (s *Session) Receive(ctx context.Context, depth int, sink Sink) error {
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	jit := &Jitter{Depth: depth}
	var digits Digits
	var src net.Addr
	buf := make([]byte, 1500)
	lastLen := FrameSamples
	deliver := func(fs []Frame) {
		for _, f := range fs {
			if sink.Audio == nil {
				continue
			}
			if f.Lost > 0 {
				sink.Audio(make([]int16, min(f.Lost, 50)*lastLen))
			}
			lastLen = max(1, len(f.Packet.Payload))
			sink.Audio(s.codec.Decode(nil, f.Packet.Payload))
		}
	}
	defer func() {
		deliver(jit.Flush())
		s.mu.Lock()
		s.stats.Jitter = jit.Stats()
		s.mu.Unlock()
	}()
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return ErrClosed
			}
			return fmt.Errorf("media: receive RTP: %w", err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil || p.Version != 2 {
			s.count(func(st *Stats) { st.Garbage++ })
			continue
		}
		if src != nil && from.String() != src.String() {
			s.count(func(st *Stats) { st.Foreign++ })
			continue
		}
		audio := p.PayloadType == s.codec.PayloadType
		dtmf := s.dtmf >= 0 && int(p.PayloadType) == s.dtmf
		if !audio && !dtmf {
			s.count(func(st *Stats) { st.Garbage++ })
			continue
		}
		if src == nil {
			src = from
			s.mu.Lock()
			s.remote = from
			s.mu.Unlock()
		}
		s.count(func(st *Stats) { st.Received++ })
		if sink.Packet != nil {
			sink.Packet()
		}
		if dtmf {
			for _, d := range digits.Push(&p) {
				if sink.Digit != nil {
					sink.Digit(d)
				}
			}
			continue
		}
		p.Payload = append([]byte(nil), p.Payload...)
		deliver(jit.Push(&p))
	}
}

func (s *Session) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}
