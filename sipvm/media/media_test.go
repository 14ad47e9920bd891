package media

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestG711RoundTrip(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		t.Run(c.Name, func(t *testing.T) {
			for _, s := range []int16{0, 1, -1, 100, -100, 1000, -1000, 8000, -8000, 32767, -32768} {
				got := c.Decode(nil, c.Encode(nil, []int16{s}))[0]
				// G.711 keeps about 4 bits of mantissa: error below 1/16 of
				// the magnitude, plus the step near zero.
				if tol := math.Abs(float64(s))/16 + 16; math.Abs(float64(got)-float64(s)) > tol {
					t.Errorf("sample %d: got %d back, want within %.0f", s, got, tol)
				}
			}
			for b := range 256 { // every code decodes and re-encodes to itself
				s := c.Decode(nil, []byte{byte(b)})
				if got := c.Encode(nil, s)[0]; c.Decode(nil, []byte{got})[0] != s[0] {
					t.Errorf("code %#x: decodes to %d, re-encodes to %#x", b, s[0], got)
				}
			}
		})
	}
}

func TestAnswer(t *testing.T) {
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
	offer := func(fmts string, attrs string) []byte {
		return []byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP " + fmts + "\r\n" + attrs)
	}
	tests := []struct {
		name     string
		offer    []byte
		want     Codec
		wantDTMF int
		wantErr  error
	}{
		{"PCMU first", offer("0 8 101", "a=rtpmap:101 telephone-event/8000\r\n"), PCMU, 101, nil},
		{"PCMA first", offer("8 0", ""), PCMA, -1, nil},
		{"opus then PCMA", offer("111 8 96", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:96 telephone-event/8000\r\n"), PCMA, 96, nil},
		{"dynamic PCMU", offer("97", "a=rtpmap:97 PCMU/8000\r\n"), Codec{Name: "PCMU", PayloadType: 97}, -1, nil},
		{"only G.722 and opus", offer("9 111", "a=rtpmap:111 opus/48000/2\r\n"), Codec{}, -1, ErrNoCommonCodec},
		{"no audio", []byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\n"), Codec{}, -1, ErrSDP},
		{"garbage", []byte("v=0\r\nnonsense"), Codec{}, -1, ErrSDP},
		{"empty", nil, Codec{}, -1, ErrSDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c, ans, err := Answer(tt.offer, local)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if c != tt.want || r.DTMF != tt.wantDTMF {
				t.Errorf("got codec %v dtmf %d, want %v dtmf %d", c, r.DTMF, tt.want, tt.wantDTMF)
			}
			if r.Addr.String() != "10.0.0.1:5004" {
				t.Errorf("got remote %v, want 10.0.0.1:5004", r.Addr)
			}
			back, err := ParseSDP(ans)
			if err != nil || back.Addr.String() != local.String() || len(back.Codecs) != 1 || back.Codecs[0] != c || back.DTMF != tt.wantDTMF {
				t.Errorf("answer %q parses to %+v, %v", ans, back, err)
			}
		})
	}
}

func pkt(seq uint16) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 160}, Payload: []byte{byte(seq)}}
}

func TestJitter(t *testing.T) {
	tests := []struct {
		name      string
		in        []uint16
		want      []uint16 // delivered, in order
		wantLost  int
		wantStats func(JitterStats) bool
	}{
		{"in order", []uint16{1, 2, 3}, []uint16{1, 2, 3}, 0, nil},
		{"reordered", []uint16{1, 3, 2, 4}, []uint16{1, 2, 3, 4}, 0, func(s JitterStats) bool { return s.Reordered == 1 }},
		{"duplicates", []uint16{1, 2, 2, 3, 3}, []uint16{1, 2, 3}, 0, func(s JitterStats) bool { return s.Duplicates == 2 && s.Late == 0 }},
		{"loss noticed once depth waits", []uint16{1, 3, 4, 5, 6, 7, 8}, []uint16{1, 3, 4, 5, 6, 7, 8}, 1, nil},
		{"late after given up", []uint16{1, 3, 4, 5, 6, 7, 8, 2}, []uint16{1, 3, 4, 5, 6, 7, 8}, 1, func(s JitterStats) bool { return s.Late == 1 }},
		{"wraps", []uint16{65534, 65535, 0, 1}, []uint16{65534, 65535, 0, 1}, 0, nil},
		{"jump is a new stream", []uint16{1, 2, 40000, 40001}, []uint16{1, 2, 40000, 40001}, 0, func(s JitterStats) bool { return s.Resyncs == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &Jitter{Depth: 5}
			var got []uint16
			lost := 0
			take := func(fs []Frame) {
				for _, f := range fs {
					got = append(got, f.Packet.SequenceNumber)
					lost += f.Lost
				}
			}
			for _, s := range tt.in {
				take(j.Push(pkt(s)))
			}
			take(j.Flush())
			if !slices.Equal(got, tt.want) || lost != tt.wantLost {
				t.Errorf("got %v lost %d, want %v lost %d", got, lost, tt.want, tt.wantLost)
			}
			if tt.wantStats != nil && !tt.wantStats(j.Stats()) {
				t.Errorf("stats %+v", j.Stats())
			}
		})
	}
}

func ev(ts uint32, code uint8, end bool) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, Timestamp: ts}, Payload: Event{Code: code, End: end, Duration: 160}.Marshal()}
}

func TestDigits(t *testing.T) {
	tests := []struct {
		name string
		in   []*rtp.Packet
		want string
	}{
		{"one key, three end packets", []*rtp.Packet{ev(1, 1, false), ev(1, 1, false), ev(1, 1, true), ev(1, 1, true), ev(1, 1, true)}, "1"},
		{"two keys", []*rtp.Packet{ev(1, 7, false), ev(1, 7, true), ev(900, 11, false), ev(900, 11, true), ev(900, 11, true)}, "7#"},
		{"end lost", []*rtp.Packet{ev(1, 9, false), ev(1, 9, false), ev(900, 0, false), ev(900, 0, true)}, "90"},
		{"same key twice", []*rtp.Packet{ev(1, 5, true), ev(1, 5, true), ev(500, 5, true)}, "55"},
		{"not DTMF", []*rtp.Packet{ev(1, 16, true), {Payload: []byte{1}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Digits
			var got []rune
			for _, p := range tt.in {
				got = append(got, d.Push(p)...)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", string(got), tt.want)
			}
		})
	}
}

func TestWAV(t *testing.T) {
	pcm := []int16{0, 1, -1, 32767, -32768, 1234}
	var b bytes.Buffer
	if err := WritePCM(&b, pcm); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPCM(bytes.NewReader(b.Bytes()))
	if err != nil || !slices.Equal(got, pcm) {
		t.Fatalf("got %v, %v, want %v", got, err, pcm)
	}
	// Streamed: sizes unknown, samples to the end.
	b.Reset()
	WriteHeader(&b, UnknownSize)
	b.Write(PCMBytes(nil, pcm))
	if got, err := ReadPCM(bytes.NewReader(b.Bytes())); err != nil || !slices.Equal(got, pcm) {
		t.Fatalf("streamed: got %v, %v, want %v", got, err, pcm)
	}
	// Not ours.
	stereo := bytes.Clone(b.Bytes())
	stereo[22] = 2
	if _, err := ReadPCM(bytes.NewReader(stereo)); !errors.Is(err, ErrWAV) {
		t.Errorf("stereo: got %v, want ErrWAV", err)
	}
}

// TestSessionLoopback plays audio and keys from one session to another
// over loopback UDP; the receiver answers to where packets came from.
func TestSessionLoopback(t *testing.T) {
	a, _ := net.ListenPacket("udp", "127.0.0.1:0")
	b, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer a.Close()
	defer b.Close()
	// b is told a wrong address for a: symmetric RTP must correct it.
	sa := NewSession(a, b.LocalAddr(), PCMA, 101)
	sb := NewSession(b, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, PCMA, 101)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got := make(chan []int16, 100)
	keys := make(chan rune, 10)
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() {
		done <- sb.Receive(rctx, 3, Sink{Audio: func(p []int16) { got <- p }, Digit: func(d rune) { keys <- d }})
	}()
	tone := make([]int16, 800) // 100 ms
	for i := range tone {
		tone[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/SampleRate))
	}
	if err := sa.Play(ctx, tone); err != nil {
		t.Fatal(err)
	}
	if err := sa.SendDigit(ctx, '7', 40*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-keys:
		if k != '7' {
			t.Fatalf("got key %q, want '7'", k)
		}
	case <-ctx.Done():
		t.Fatal("no key")
	}
	if sb.Remote().String() != a.LocalAddr().String() {
		t.Errorf("b sends to %v, want %v (symmetric RTP)", sb.Remote(), a.LocalAddr())
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(got)
	var all []int16
	for p := range got {
		all = append(all, p...)
	}
	if len(all) != len(tone) {
		t.Fatalf("got %d samples, want %d", len(all), len(tone))
	}
	for i := range all {
		if d := math.Abs(float64(all[i] - tone[i])); d > 600 {
			t.Fatalf("sample %d: got %d, want %d", i, all[i], tone[i])
		}
	}
}
