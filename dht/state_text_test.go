package dht

import (
	"encoding/json"
	"testing"
	"time"
)

func TestStatusJSONRoundTrip(t *testing.T) {
	in := Status{ProtocolVersion: 1, Successors: []PeerStatus{
		{Peer: Peer{Addr: "a"}, State: Alive, RTT: time.Millisecond},
		{Peer: Peer{Addr: "b"}, State: Suspected},
		{Peer: Peer{Addr: "c"}, State: Dead},
	}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Status
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	for i, s := range out.Successors {
		if s.State != in.Successors[i].State || s.RTT != in.Successors[i].RTT {
			t.Errorf("successor %d: got %v/%v, want %v/%v", i, s.State, s.RTT, in.Successors[i].State, in.Successors[i].RTT)
		}
	}
	var st PeerState
	if err := st.UnmarshalText([]byte("zombie")); err == nil {
		t.Error("an unknown state was accepted")
	}
}
