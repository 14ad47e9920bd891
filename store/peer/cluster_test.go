package peer

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/voicering/voicering/dht/dhttest"
	"github.com/voicering/voicering/store/local"
	"github.com/voicering/voicering/store/ring"
)

// cluster is a ring of storage peers in this process, over mutual TLS on
// 127.0.0.1, each with its own badger directory.
type cluster struct {
	t     testing.TB
	tune  func(*Config)
	peers []*member
}

type member struct {
	dir, addr string
	p         *Peer
	cancel    context.CancelFunc
	done      chan error
}

func testConfig(dir, listen string, boot []string) Config {
	return Config{
		Dir: dir, Listen: listen, Bootstrap: boot,
		Node:     dhttest.Fast(),
		Store:    local.Config{NoSync: true},
		Maintain: ring.MaintainConfig{Settle: 200 * time.Millisecond, Period: time.Second, Scrub: time.Second},
	}
}

func newCluster(t testing.TB, n int) *cluster { return newClusterWith(t, n, nil) }

// newClusterWith is newCluster with each peer's configuration adjusted by
// tune.
func newClusterWith(t testing.TB, n int, tune func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, tune: tune}
	base := t.TempDir() // before stopAll, so cleanup stops the peers first
	t.Cleanup(c.stopAll)
	for i := range n {
		m := &member{dir: filepath.Join(base, fmt.Sprintf("peer-%d", i)), addr: "127.0.0.1:0"}
		c.peers = append(c.peers, m)
		var boot []string
		if i > 0 {
			boot = []string{c.peers[0].addr}
		}
		c.start(i, boot)
	}
	c.waitConverged()
	return c
}

func (c *cluster) start(i int, boot []string) {
	c.t.Helper()
	m := c.peers[i]
	cfg := testConfig(m.dir, m.addr, boot)
	if c.tune != nil {
		c.tune(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		c.t.Fatalf("start peer %d: %v", i, err)
	}
	m.p, m.addr = p, p.Self().Addr
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() { m.done <- p.Run(ctx) }()
}

// kill stops peer i abruptly: no leave, connections dropped.
func (c *cluster) kill(i int) {
	m := c.peers[i]
	if m.p == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		c.t.Errorf("peer %d Run: %v", i, err)
	}
	m.p.Close()
	m.p = nil
}

func (c *cluster) stopAll() {
	for i := range c.peers {
		c.kill(i)
	}
}

func (c *cluster) live() []*Peer {
	var out []*Peer
	for _, m := range c.peers {
		if m.p != nil {
			out = append(out, m.p)
		}
	}
	return out
}

// waitFor polls cond until it returns nil, failing the test at the deadline.
func (c *cluster) waitFor(what string, deadline time.Duration, cond func() error) {
	c.t.Helper()
	end := time.Now().Add(deadline)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-c.t.Context().Done():
			c.t.Fatalf("waiting for %s: %v", what, c.t.Context().Err())
		}
	}
}

// waitConverged waits until every live peer's successor list is the next
// live peers in ID order, as far as the list reaches.
func (c *cluster) waitConverged() {
	c.t.Helper()
	c.waitFor("ring to converge", 60*time.Second, func() error { return Settled(c.live()) })
}
