package dhttest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/dht/dhttest"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustConverge(t *testing.T, c *dhttest.Cluster, what string) {
	t.Helper()
	start := time.Now()
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s: converged in %v", what, time.Since(start).Round(time.Millisecond))
}

func mustLookup(t *testing.T, c *dhttest.Cluster, what string) {
	t.Helper()
	if _, err := c.CheckLookups(ctxFor(t, 60*time.Second), 4, 3); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// A closed ring of 12 peers on 127.0.0.1 with mutual TLS converges; three
// peers killed abruptly are routed around and spliced out; restarted with
// the same identity they rejoin.
func TestTLSRingKillAndRestart(t *testing.T) {
	ca, err := dht.NewCA("test ring", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := dhttest.New(t, dhttest.Options{N: 12, Kind: dhttest.TLS, CA: ca, Node: dhttest.Fast(), JoinBatch: 4})
	mustConverge(t, c, "start")
	mustLookup(t, c, "start")

	killed := []int{2, 5, 9}
	ids := map[int]dht.ID{}
	for _, i := range killed {
		ids[i] = c.Peer(i).ID
		c.Stop(i)
	}
	mustConverge(t, c, "after killing 3")
	mustLookup(t, c, "after killing 3")

	for _, i := range killed {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
		if got := c.Peer(i).ID; got != ids[i] {
			t.Errorf("peer %d restarted as %s, want %s", i, got.Short(), ids[i].Short())
		}
	}
	mustConverge(t, c, "after restart")
	mustLookup(t, c, "after restart")

	st := c.Peer(0).Node().Status()
	if _, err := json.Marshal(st); err != nil {
		t.Errorf("status does not marshal: %v", err)
	}
	if st.EstimatedSize != 12 || len(st.Successors) != 11 || st.Predecessor == nil || st.ProtocolVersion != dht.ProtocolVersion {
		t.Errorf("status = %+v, want 11 successors, a predecessor, size 12", st)
	}
}

// A peer without a certificate from the ring CA cannot join a closed ring.
func TestTLSClosedRingRefusesUncertifiedPeer(t *testing.T) {
	ca, _ := dht.NewCA("test ring", 0)
	c := dhttest.New(t, dhttest.Options{N: 3, Kind: dhttest.TLS, CA: ca, Node: dhttest.Fast()})
	mustConverge(t, c, "start")

	id, _ := dht.NewIdentity(nil)
	tr, err := dht.NewTLSTransport(dht.TLSConfig{Identity: id, Addr: "127.0.0.1:0", CA: ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	cfg := dhttest.Fast()
	cfg.Transport = tr
	cfg.Bootstrap = []string{c.Peer(0).Addr}
	n, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }()
	defer func() { n.Close(); <-done }()

	// A client with the same uncertified identity is refused with a
	// clear error.
	cl, err := dht.NewClient(dht.ClientConfig{Caller: tr, Bootstrap: []string{c.Peer(0).Addr}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = cl.Lookup(ctxFor(t, 10*time.Second), dht.Key("x"), 1)
	if !errors.Is(err, dht.ErrNoPeers) || !errors.Is(err, dht.ErrNotAdmitted) {
		t.Errorf("uncertified lookup: err = %v, want ErrNoPeers and ErrNotAdmitted", err)
	}
	if _, _, err := n.Lookup(ctxFor(t, 10*time.Second), dht.Key("x"), 1); !errors.Is(err, dht.ErrNotAdmitted) {
		t.Errorf("uncertified node's lookup: err = %v, want ErrNotAdmitted", err)
	}
	// Its join attempts are refused and nobody lists it.
	if err := c.WaitFor("join attempts", 10*time.Second, func() error {
		if got := tr.Meter().Total().Calls; got < 4 {
			return fmt.Errorf("%d calls answered", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	err = func() error {
		for _, p := range c.Live() {
			for _, s := range p.Node().Neighbours().Successors {
				if s.ID == id.ID() {
					return fmt.Errorf("peer %d lists the uncertified peer", p.Index)
				}
			}
		}
		if len(n.Neighbours().Successors) != 0 {
			return errors.New("the uncertified peer found successors")
		}
		if n.Status().Joined {
			return errors.New("the uncertified peer joined")
		}
		return nil
	}()
	if err != nil {
		t.Fatal(err)
	}
}

// A non-member client looks keys up iteratively from a bootstrap address.
func TestClientLookup(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 8, Kind: dhttest.TLS, Node: dhttest.Fast()})
	mustConverge(t, c, "start")
	id, _ := dht.NewIdentity(nil)
	tr, err := dht.NewTLSTransport(dht.TLSConfig{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cl, err := dht.NewClient(dht.ClientConfig{Caller: tr, Bootstrap: []string{c.Peer(3).Addr}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		key := dht.Key(fmt.Sprintf("aor:sip:user%d@example.org", i))
		got, st, err := cl.Lookup(ctxFor(t, 10*time.Second), key, 5)
		if err != nil {
			t.Fatal(err)
		}
		want := c.Owners(key, 5)
		if len(got) != len(want) {
			t.Fatalf("lookup %s: got %d peers, want %d", key.Short(), len(got), len(want))
		}
		for k := range got {
			if got[k].ID != want[k].ID {
				t.Errorf("lookup %s: peer %d = %s, want %s", key.Short(), k, got[k], want[k])
			}
		}
		if st.Hops < 1 {
			t.Errorf("client lookup hops = %d, want ≥ 1", st.Hops)
		}
	}
}

// Ring methods answer malformed bodies with ErrBadRequest and keep
// serving.
func TestMalformedRingBodies(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 2, Kind: dhttest.TLS, Node: dhttest.Fast()})
	mustConverge(t, c, "start")
	id, _ := dht.NewIdentity(nil)
	tr, _ := dht.NewTLSTransport(dht.TLSConfig{Identity: id})
	defer tr.Close()
	target := dht.Peer{ID: c.Peer(0).ID, Addr: c.Peer(0).Addr}
	for _, tt := range []struct {
		method string
		body   []byte
	}{
		{"ring.find", nil},
		{"ring.find", []byte{1, 2, 3}},
		{"ring.find", append(make([]byte, 32), 0)}, // n = 0
		{"ring.notify", []byte{0xff}},
		{"ring.notify", []byte{5, 'a'}},
		{"ring.leave", []byte{1, 0xff}},
	} {
		t.Run(fmt.Sprintf("%s %x", tt.method, tt.body), func(t *testing.T) {
			_, err := tr.Call(ctxFor(t, 5*time.Second), target, tt.method, tt.body)
			if !errors.Is(err, dht.ErrBadRequest) {
				t.Errorf("err = %v, want ErrBadRequest", err)
			}
		})
	}
	mustConverge(t, c, "after bad requests")
}

// A graceful leave splices the ring at once; a partition splits the ring
// in two that each converge, and healing merges them.
func TestMemLeavePartitionHeal(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 16, Node: dhttest.Fast()})
	mustConverge(t, c, "start")

	leaving := c.Peer(4)
	var pred *dhttest.Peer
	for _, p := range c.Live() {
		if s := p.Node().Neighbours().Successors; len(s) > 0 && s[0].ID == leaving.ID {
			pred = p
		}
	}
	if err := c.Leave(ctxFor(t, 5*time.Second), 4); err != nil {
		t.Fatal(err)
	}
	// The splice is immediate: no failure detection needed.
	if s := pred.Node().Neighbours().Successors; len(s) == 0 || s[0].ID == leaving.ID {
		t.Errorf("after leave, predecessor's successor = %v, want the leaver's successor", s)
	}
	mustConverge(t, c, "after leave")

	var a, b []int
	for _, p := range c.Live() {
		if p.Index%2 == 0 {
			a = append(a, p.Index)
		} else {
			b = append(b, p.Index)
		}
	}
	c.Partition(a, b)
	err := c.WaitFor("both halves to see only their own side", 60*time.Second, func() error {
		for _, p := range c.Live() {
			for _, s := range p.Node().Neighbours().Successors {
				if c.Peer(indexOf(c, s.ID)).Index%2 != p.Index%2 {
					return fmt.Errorf("peer %d still lists %s across the partition", p.Index, s)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Heal()
	mustConverge(t, c, "after heal")
	mustLookup(t, c, "after heal")
}

func indexOf(c *dhttest.Cluster, id dht.ID) int {
	for _, p := range c.Peers() {
		if p.ID == id {
			return p.Index
		}
	}
	return -1
}
