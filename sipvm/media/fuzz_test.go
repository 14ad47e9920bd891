package media

import (
	"bytes"
	"net"
	"testing"

	"github.com/pion/rtp"
)

func FuzzParseSDP(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"))
	f.Add([]byte("v=0\r\nm=audio 1 RTP/AVP 8\r\nc=IN IP6 ::1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, c, ans, err := Answer(b, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
		if err != nil {
			return
		}
		if r.Addr == nil || len(ans) == 0 || c.Name == "" {
			t.Fatalf("accepted offer gave %+v %v %q", r, c, ans)
		}
	})
}

// FuzzRTP feeds packets (split from the input) to the RTP decoder, the
// jitter buffer and the DTMF decoder, as Session.Receive does.
func FuzzRTP(f *testing.F) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 7}, Payload: make([]byte, 160)}
	b, _ := p.Marshal()
	f.Add(append(append(b, 0xFF), b...))
	d := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101}, Payload: Event{Code: 11, End: true}.Marshal()}
	b, _ = d.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		j := &Jitter{Depth: 3}
		var digits Digits
		for _, chunk := range bytes.Split(in, []byte{0xFF}) {
			var p rtp.Packet
			if p.Unmarshal(chunk) != nil {
				continue
			}
			if p.PayloadType == 101 {
				digits.Push(&p)
				continue
			}
			for _, fr := range j.Push(&p) {
				if fr.Packet == nil || fr.Lost < 0 {
					t.Fatal("bad frame")
				}
			}
		}
		j.Flush()
		if s := j.Stats(); s.Delivered+s.Duplicates+s.Late > s.Received {
			t.Fatalf("stats %+v deliver more than received", s)
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add(Event{Code: 1, End: true, Duration: 800}.Marshal())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEvent(b)
		if err != nil {
			return
		}
		if back, _ := ParseEvent(e.Marshal()); back != e {
			t.Fatalf("%+v re-encodes to %+v", e, back)
		}
	})
}

func FuzzReadHeader(f *testing.F) {
	var b bytes.Buffer
	WritePCM(&b, []int16{1, 2, 3})
	f.Add(b.Bytes())
	b.Reset()
	WriteHeader(&b, UnknownSize)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		size, err := ReadHeader(bytes.NewReader(in))
		if err == nil && size < -1 {
			t.Fatalf("size %d", size)
		}
	})
}
