package dht

import "fmt"

// UnmarshalText reads a state named by MarshalText, so a Status decoded
// from JSON (as `voicering ring` does) round-trips.
func (s *PeerState) UnmarshalText(b []byte) error {
	for _, st := range []PeerState{Alive, Suspected, Dead} {
		if string(b) == st.String() {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("dht: unknown peer state %q", b)
}
