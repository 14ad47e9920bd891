package dht_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/dht/memnet"
)

// simRing runs nodes on a memnet inside a synctest bubble (virtual time).
type simRing struct {
	t     *testing.T
	nw    *memnet.Network
	nodes map[string]*dht.Node // by address
	done  map[string]chan error
}

func newSimRing(t *testing.T) *simRing {
	r := &simRing{t: t, nw: memnet.New(memnet.Config{Delay: 5 * time.Millisecond, Jitter: 5 * time.Millisecond}),
		nodes: map[string]*dht.Node{}, done: map[string]chan error{}}
	t.Cleanup(func() {
		for a := range r.nodes {
			r.stop(a)
		}
	})
	return r
}

// start runs the node named addr (its ID is dht.Key(addr)) with cfg.
func (r *simRing) start(addr string, cfg dht.Config) *dht.Node {
	r.t.Helper()
	tr, err := r.nw.Listen(dht.Key(addr), addr)
	if err != nil {
		r.t.Fatal(err)
	}
	cfg.Transport, cfg.Seed = tr, uint64(len(addr))+uint64(addr[len(addr)-1])
	n, err := dht.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }() // joined in stop
	r.nodes[addr], r.done[addr] = n, done
	return n
}

func (r *simRing) stop(addr string) {
	if n := r.nodes[addr]; n != nil {
		n.Close()
		if err := <-r.done[addr]; err != nil {
			r.t.Errorf("%s: run: %v", addr, err)
		}
		delete(r.nodes, addr)
	}
}

// converged reports (as nil) whether every node's first successor and
// predecessor are the true ones.
func (r *simRing) converged() error {
	var ns []*dht.Node
	for _, n := range r.nodes {
		ns = append(ns, n)
	}
	slices.SortFunc(ns, func(a, b *dht.Node) int { return a.Self().ID.Compare(b.Self().ID) })
	for i, n := range ns {
		nb := n.Neighbours()
		next, prev := ns[(i+1)%len(ns)].Self(), ns[(i+len(ns)-1)%len(ns)].Self()
		if len(nb.Successors) == 0 || nb.Successors[0] != next || nb.Predecessor == nil || *nb.Predecessor != prev {
			return fmt.Errorf("%s: successors %v, predecessor %v; want %v first, %v", n.Self(), nb.Successors, nb.Predecessor, next, prev)
		}
	}
	return nil
}

// waitConverged waits (in virtual time) for converged.
func (r *simRing) waitConverged(within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := r.converged()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not converged within %v: %v", within, err)
		}
		time.Sleep(100 * time.Millisecond) // a poll interval (virtual time)
	}
}

// addrs names n nodes.
func addrs(n int) []string {
	var as []string
	for i := range n {
		as = append(as, fmt.Sprintf("n%02d", i))
	}
	return as
}

// TestRestartedPeerNotifiedBeforeItJoins restarts a peer whose bootstrap
// peer is gone, so the first it hears of the ring is a notify from its
// old predecessor, which still lists it. The peer must join through that
// predecessor, not take it as its successor: a successor list starting
// with the predecessor makes stabilize walk back around the whole ring,
// eight peers a round (at N = 1000 after a mass restart, minutes), and
// lookups answered by a peer that is not in the ring yet send other
// joining peers the same way.
func TestRestartedPeerNotifiedBeforeItJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSimRing(t)
		names := addrs(24)
		r.start(names[0], dht.Config{})
		for _, a := range names[1:] {
			r.start(a, dht.Config{Bootstrap: []string{names[0]}})
		}
		r.waitConverged(time.Minute)

		victim := names[5]
		old := r.nodes[victim].Neighbours()
		r.stop(victim)
		n := r.start(victim, dht.Config{Bootstrap: []string{"gone"}})
		// Watch every state the peer passes through (a subscription
		// keeps only the latest).
		for deadline := time.Now().Add(30 * time.Second); r.converged() != nil; {
			if nb := n.Neighbours(); len(nb.Successors) > 0 && nb.Successors[0] != old.Successors[0] {
				t.Fatalf("restarted peer took %v as its successor, want %v", nb.Successors[0], old.Successors[0])
			}
			if time.Now().After(deadline) {
				t.Fatalf("not converged within 30s: %v", r.converged())
			}
			time.Sleep(time.Millisecond) // a poll interval (virtual time)
		}
	})
}

// TestWholeRingRestart restarts every peer of a ring at once, each
// bootstrapping only from the others: while no peer is in a ring none
// answers lookups, until joins that reach no ring make some of them the
// first peers of one again.
func TestWholeRingRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSimRing(t)
		names := addrs(8)
		for i, a := range names {
			boot := slices.Concat(names[:i], names[i+1:])
			r.start(a, dht.Config{Bootstrap: boot})
		}
		r.waitConverged(5 * time.Minute)
	})
}

// TestPeerCache has a peer whose only bootstrap peer is gone rejoin
// through the peers its cache remembers from its last run.
func TestPeerCache(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := newSimRing(t)
		names := addrs(6)
		r.start(names[0], dht.Config{})
		for _, a := range names[1:] {
			cfg := dht.Config{Bootstrap: []string{names[0]}}
			if a == names[3] {
				cfg.PeerCache = filepath.Join(dir, "peers.cache")
			}
			r.start(a, cfg)
		}
		r.waitConverged(time.Minute)
		r.stop(names[3])
		b, err := os.ReadFile(filepath.Join(dir, "peers.cache"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) < 3 || slices.Contains(lines, names[3]) {
			t.Errorf("cache written on Close holds %d lines, want a header and the peers known (not itself):\n%s", len(lines), b)
		}
		r.stop(names[0]) // the bootstrap peer is gone for good
		r.start(names[3], dht.Config{Bootstrap: []string{names[0]}, PeerCache: filepath.Join(dir, "peers.cache")})
		r.waitConverged(time.Minute)
	})
}
