package dht

import (
	"slices"
	"sync"
	"time"
)

// Neighbours is a node's view of its neighbourhood: what upper layers
// watch to repair and hand over data.
type Neighbours struct {
	Self        Peer   `json:"self"`
	Predecessor *Peer  `json:"predecessor,omitempty"` // nil: not known
	Successors  []Peer `json:"successors"`            // closest first
}

func (n *Node) neighboursLocked() Neighbours {
	nb := Neighbours{Self: n.self, Successors: slices.Clone(n.succ)}
	if n.hasPred {
		p := n.pred
		nb.Predecessor = &p
	}
	return nb
}

// Neighbours returns the node's current predecessor and successor list.
func (n *Node) Neighbours() Neighbours {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.neighboursLocked()
}

type subscription struct {
	mu sync.Mutex
	c  chan Neighbours
}

// send replaces any unread value with nb, so a slow reader skips
// intermediate states but always ends with the latest.
func (s *subscription) send(nb Neighbours) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.c:
	default:
	}
	s.c <- nb
}

// Subscribe returns a channel that receives the node's Neighbours after
// every change of its predecessor or successor list. Only the latest
// unread value is kept. cancel stops the deliveries; the channel is not
// closed.
func (n *Node) Subscribe() (c <-chan Neighbours, cancel func()) {
	s := &subscription{c: make(chan Neighbours, 1)}
	n.mu.Lock()
	n.subs[s] = struct{}{}
	n.mu.Unlock()
	return s.c, func() {
		n.mu.Lock()
		delete(n.subs, s)
		n.mu.Unlock()
	}
}

// PeerStatus is a neighbour as the failure detector sees it.
type PeerStatus struct {
	Peer
	State PeerState     `json:"state"`
	RTT   time.Duration `json:"rtt_ns"` // smoothed; 0 before the first sample
}

// Status is a snapshot of a node for `voicering ring`; it marshals to
// JSON.
type Status struct {
	ID              ID           `json:"id"`
	Addr            string       `json:"addr"`
	ProtocolVersion int          `json:"protocol_version"`
	Joined          bool         `json:"joined"`
	Predecessor     *PeerStatus  `json:"predecessor,omitempty"`
	Successors      []PeerStatus `json:"successors"`
	Fingers         int          `json:"fingers"` // distinct peers in the finger table
	EstimatedSize   float64      `json:"estimated_size"`
	Suspected       []ID         `json:"suspected,omitempty"`
}

// Status returns a snapshot of the node.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := func(p Peer) PeerStatus {
		st, rtt, _ := n.fd.stateOf(p.ID)
		return PeerStatus{Peer: p, State: st, RTT: rtt}
	}
	s := Status{
		ID:              n.self.ID,
		Addr:            n.self.Addr,
		ProtocolVersion: ProtocolVersion,
		Joined:          n.joined,
		Successors:      make([]PeerStatus, 0, len(n.succ)),
		EstimatedSize:   n.estimateLocked(),
		Suspected:       n.fd.suspected(),
	}
	if n.hasPred {
		p := ps(n.pred)
		s.Predecessor = &p
	}
	for _, p := range n.succ {
		s.Successors = append(s.Successors, ps(p))
	}
	seen := map[ID]bool{}
	for i := range n.fingers {
		if n.hasFinger[i] && !seen[n.fingers[i].ID] {
			seen[n.fingers[i].ID] = true
			s.Fingers++
		}
	}
	slices.SortFunc(s.Suspected, ID.Compare)
	return s
}

// EstimateSize estimates the number of peers in the ring from the density
// of IDs in the successor list: len · 2^256 / (distance to the last
// successor). A list shorter than configured holds the whole ring.
func (n *Node) EstimateSize() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.estimateLocked()
}

func (n *Node) estimateLocked() float64 {
	if len(n.succ) < n.cfg.Successors {
		return float64(len(n.succ) + 1)
	}
	f := Distance(n.self.ID, n.succ[len(n.succ)-1].ID).Fraction()
	if f == 0 {
		return float64(len(n.succ) + 1)
	}
	return float64(len(n.succ)) / f
}
