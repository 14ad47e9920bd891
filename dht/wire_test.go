package dht

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

var (
	wirePeers = []Peer{{ID: Key("a"), Addr: "10.0.0.1:7946"}, {ID: Key("b"), Addr: "[::1]:7946"}}
)

func TestWireRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		msg    any
		encode func() []byte
		decode func([]byte) (any, error)
	}{
		{"find request", findReq{Key: Key("k"), N: 16}, findReq{Key: Key("k"), N: 16}.encode,
			func(b []byte) (any, error) { return decodeFindReq(b) }},
		{"find response, done", findResp{Done: true, Peers: wirePeers}, findResp{Done: true, Peers: wirePeers}.encode,
			func(b []byte) (any, error) { return decodeFindResp(b) }},
		{"find response, closer", findResp{Peers: wirePeers[:1]}, findResp{Peers: wirePeers[:1]}.encode,
			func(b []byte) (any, error) { return decodeFindResp(b) }},
		{"state", stateMsg{HasPred: true, Pred: wirePeers[1], Successors: wirePeers}, stateMsg{HasPred: true, Pred: wirePeers[1], Successors: wirePeers}.encode,
			func(b []byte) (any, error) { return decodeState(b) }},
		{"state without predecessor", stateMsg{Successors: []Peer{}}, stateMsg{}.encode,
			func(b []byte) (any, error) { return decodeState(b) }},
		{"notify", notifyMsg{Addr: "h:1"}, notifyMsg{Addr: "h:1"}.encode,
			func(b []byte) (any, error) { return decodeNotify(b) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.encode()
			got, err := tt.decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.msg) {
				t.Errorf("decode(encode) = %+v, want %+v", got, tt.msg)
			}
			// A later version may append fields: v1 ignores them.
			if got, err := tt.decode(append(b, 0xde, 0xad)); err != nil || !reflect.DeepEqual(got, tt.msg) {
				t.Errorf("with trailing bytes: %+v, %v; want %+v", got, err, tt.msg)
			}
			for i := range b { // every truncation fails cleanly
				if _, err := tt.decode(b[:i]); err != nil && !errors.Is(err, ErrBadRequest) {
					t.Errorf("truncated to %d: err = %v, want ErrBadRequest", i, err)
				}
			}
		})
	}
}

// fuzzDecoder checks a decoder never panics, fails only with
// ErrBadRequest, and that what it accepts re-encodes to something it
// decodes the same.
func fuzzDecoder[M any](f *testing.F, decode func([]byte) (M, error), encode func(M) []byte, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("err = %v, want ErrBadRequest", err)
			}
			return
		}
		b2 := encode(m)
		m2, err := decode(b2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(encode(m2), b2) {
			t.Fatalf("re-encode differs")
		}
	})
}

func FuzzDecodeFindReq(f *testing.F) {
	fuzzDecoder(f, decodeFindReq, findReq.encode, findReq{Key: Key("k"), N: 3}.encode())
}

func FuzzDecodeFindResp(f *testing.F) {
	fuzzDecoder(f, decodeFindResp, findResp.encode, findResp{Done: true, Peers: wirePeers}.encode())
}

func FuzzDecodeState(f *testing.F) {
	fuzzDecoder(f, decodeState, stateMsg.encode, stateMsg{HasPred: true, Pred: wirePeers[0], Successors: wirePeers}.encode(), stateMsg{}.encode())
}

func FuzzDecodeNotify(f *testing.F) {
	fuzzDecoder(f, decodeNotify, notifyMsg.encode, notifyMsg{Addr: "127.0.0.1:1"}.encode())
}
