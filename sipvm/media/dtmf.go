package media

import (
	"errors"

	"github.com/pion/rtp"
)

// Event is an RFC 4733 telephone-event payload.
type Event struct {
	Code     uint8 // 0–9, 10 '*', 11 '#', 12–15 'A'–'D', others not DTMF
	End      bool
	Volume   uint8
	Duration uint16
}

// ErrEvent marks a telephone-event payload shorter than 4 bytes.
var ErrEvent = errors.New("media: telephone-event payload shorter than 4 bytes")

// ParseEvent decodes an RFC 4733 payload (only its first event).
func ParseEvent(b []byte) (Event, error) {
	if len(b) < 4 {
		return Event{}, ErrEvent
	}
	return Event{Code: b[0], End: b[1]&0x80 != 0, Volume: b[1] & 0x3F, Duration: uint16(b[2])<<8 | uint16(b[3])}, nil
}

// Marshal encodes e as an RFC 4733 payload.
func (e Event) Marshal() []byte {
	b := []byte{e.Code, e.Volume & 0x3F, byte(e.Duration >> 8), byte(e.Duration)}
	if e.End {
		b[1] |= 0x80
	}
	return b
}

// Digit returns the key of the event ('0'–'9', '*', '#', 'A'–'D'), or 0.
func (e Event) Digit() rune {
	switch {
	case e.Code <= 9:
		return rune('0' + e.Code)
	case e.Code == 10:
		return '*'
	case e.Code == 11:
		return '#'
	case e.Code <= 15:
		return rune('A' + e.Code - 12)
	}
	return 0
}

// DigitCode returns the event code of key d, and false for a key that is
// not DTMF.
func DigitCode(d rune) (uint8, bool) {
	switch {
	case d >= '0' && d <= '9':
		return uint8(d - '0'), true
	case d == '*':
		return 10, true
	case d == '#':
		return 11, true
	case d >= 'A' && d <= 'D':
		return uint8(d-'A') + 12, true
	}
	return 0, false
}

// Digits turns telephone-event packets into key presses. An event is
// one RTP timestamp: its key is reported once, at its first end packet
// (the end packet is sent three times: the copies are ignored). When a
// new event starts before the previous one ended (its end packets lost),
// the previous key is reported then.
type Digits struct {
	have, ended bool
	ts          uint32
	code        Event
}

// Push takes one telephone-event packet and returns the keys it
// completes (zero, one or two).
func (d *Digits) Push(p *rtp.Packet) []rune {
	e, err := ParseEvent(p.Payload)
	if err != nil || e.Digit() == 0 {
		return nil
	}
	var out []rune
	if d.have && p.Timestamp == d.ts {
		if !d.ended && e.End {
			d.ended = true
			out = append(out, d.code.Digit())
		}
		return out
	}
	if d.have && !d.ended {
		out = append(out, d.code.Digit())
	}
	d.have, d.ts, d.code, d.ended = true, p.Timestamp, e, e.End
	if e.End {
		out = append(out, e.Digit())
	}
	return out
}
