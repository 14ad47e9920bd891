// Package dhttest runs rings of dht peers in one process, on the
// in-memory network (dht/memnet) or on real mutual-TLS connections over
// 127.0.0.1, for scenario tests: start, stop, restart with the same
// identity, partition, heal, and wait for conditions with deadlines.
// Later packages build their own scenarios on it.
package dhttest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/dht/memnet"
)

// Kind selects the network a cluster runs on.
type Kind int

const (
	Mem Kind = iota // dht/memnet: fast, seeded, partitionable
	TLS             // real TLS transports on 127.0.0.1
)

// Options configures a Cluster.
type Options struct {
	// N is the number of peers started by New.
	N int
	// Kind is the network. Zero: Mem.
	Kind Kind
	// Seed seeds node IDs (Mem), bootstrap choices and node jitter.
	// Zero: 1.
	Seed uint64
	// Net configures the in-memory network (Mem only).
	Net memnet.Config
	// Node is the template of every peer's configuration; Transport,
	// Bootstrap, Seed and Logger are set per peer. Fast() suits real-time
	// tests; the dht defaults suit testing/synctest simulations.
	Node dht.Config
	// CA, if set, closes a TLS ring: every peer gets a certificate from it.
	CA *dht.CA
	// JoinBatch is how many peers start at once before New waits for them
	// to join. Zero: 16.
	JoinBatch int
	// JoinTimeout bounds the wait for each batch. Zero: 30s.
	JoinTimeout time.Duration
	// Logger receives the peers' ring events. Nil: discarded.
	Logger *slog.Logger
}

// Fast returns node settings for tests that run in real time: periods of
// tens of milliseconds and back-off scaled down to match.
func Fast() dht.Config {
	return dht.Config{
		StabilizePeriod:  50 * time.Millisecond,
		FixFingersPeriod: 50 * time.Millisecond,
		PingPeriod:       100 * time.Millisecond,
		MergePeriod:      time.Second,
		MinTimeout:       200 * time.Millisecond,
		MaxTimeout:       2 * time.Second,
		InitialTimeout:   time.Second,
		DeadMemory:       time.Second,
		Backoff:          dht.Backoff{Initial: 50 * time.Millisecond, Max: time.Second},
	}
}

// Peer is one member of a Cluster.
type Peer struct {
	Index int
	ID    dht.ID
	Addr  string
	Dir   string // data directory (TLS)

	c       *Cluster
	node    *dht.Node
	meter   *dht.Meter
	done    chan error
	known   []string // addresses remembered from the last run, like a peer cache
	running bool
}

// Node returns the running node, or nil if the peer is stopped.
func (p *Peer) Node() *dht.Node {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.node
}

// Running reports whether the peer is running.
func (p *Peer) Running() bool {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.running
}

// Cluster is a ring of peers in one process.
type Cluster struct {
	tb   testing.TB
	opts Options
	r    int // successor list length
	// Net is the in-memory network (Mem), nil for TLS.
	Net *memnet.Network

	mu    sync.Mutex
	rng   *rand.Rand
	peers []*Peer
	gone  dht.Traffic // traffic of transports already closed (TLS)
}

// New starts opts.N peers, batch by batch, each joining through peers
// already started, and registers Close with tb.Cleanup. It does not wait
// for the ring to converge: see WaitConverged.
func New(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.JoinBatch == 0 {
		opts.JoinBatch = 16
	}
	if opts.JoinTimeout == 0 {
		opts.JoinTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{tb: tb, opts: opts, r: cmp.Or(opts.Node.Successors, 16), rng: rand.New(rand.NewPCG(opts.Seed, 7))}
	if opts.Kind == Mem {
		if opts.Net.Seed == 0 {
			opts.Net.Seed = opts.Seed
		}
		c.Net = memnet.New(opts.Net)
	}
	tb.Cleanup(c.Close)
	if err := c.Add(opts.N); err != nil {
		tb.Fatal(err)
	}
	return c
}

// Add starts n more peers, batch by batch, and waits for each batch to
// join.
func (c *Cluster) Add(n int) error {
	for n > 0 {
		k := min(n, c.opts.JoinBatch)
		if len(c.Peers()) == 0 {
			k = 1 // the first peer starts the ring alone
		}
		n -= k
		var batch []*Peer
		joined := len(c.Peers()) // peers of earlier batches: the ones to join through
		for range k {
			c.mu.Lock()
			p := &Peer{c: c, Index: len(c.peers)}
			if c.opts.Kind == Mem {
				var id dht.ID
				for i := range id {
					id[i] = byte(c.rng.Uint32())
				}
				p.ID, p.Addr = id, fmt.Sprintf("peer-%d", p.Index)
			} else {
				p.Dir = filepath.Join(c.tb.TempDir(), fmt.Sprintf("peer-%d", p.Index))
			}
			boot := c.randomAddrsLocked(3, p, joined)
			c.peers = append(c.peers, p)
			c.mu.Unlock()
			if err := c.start(p, boot); err != nil {
				return err
			}
			batch = append(batch, p)
		}
		if len(c.peers) == len(batch) {
			continue // the first batch has no ring to join yet
		}
		err := c.WaitFor("batch to join", c.opts.JoinTimeout, func() error {
			for _, p := range batch {
				if n := p.Node(); n != nil && len(n.Neighbours().Successors) == 0 {
					return fmt.Errorf("peer %d has no successor", p.Index)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// randomAddrsLocked returns up to k addresses of the first among peers
// other than p, chosen with the cluster's seeded randomness (a bootstrap
// list: some may be down).
func (c *Cluster) randomAddrsLocked(k int, p *Peer, among int) []string {
	var addrs []string
	for _, i := range c.rng.Perm(among) {
		if q := c.peers[i]; q != p && q.Addr != "" && len(addrs) < k {
			addrs = append(addrs, q.Addr)
		}
	}
	return addrs
}

func (c *Cluster) start(p *Peer, bootstrap []string) error {
	var tr dht.Transport
	switch c.opts.Kind {
	case Mem:
		t, err := c.Net.Listen(p.ID, p.Addr)
		if err != nil {
			return fmt.Errorf("dhttest: peer %d: %w", p.Index, err)
		}
		tr, p.meter = t, t.Meter()
	case TLS:
		id, err := dht.LoadIdentity(p.Dir)
		if err != nil {
			return fmt.Errorf("dhttest: peer %d: %w", p.Index, err)
		}
		if c.opts.CA != nil {
			cert, err := c.opts.CA.Issue(id.PublicKey(), 0)
			if err != nil {
				return err
			}
			if err := id.SetCertificate(cert); err != nil {
				return err
			}
		}
		cfg := dht.TLSConfig{Identity: id, Addr: cmp.Or(p.Addr, "127.0.0.1:0"), Logger: c.opts.Logger}
		if c.opts.CA != nil {
			cfg.CA = c.opts.CA.Cert
		}
		t, err := dht.NewTLSTransport(cfg)
		if err != nil && p.Addr != "" { // the old port is taken: take another
			cfg.Addr = "127.0.0.1:0"
			t, err = dht.NewTLSTransport(cfg)
		}
		if err != nil {
			return fmt.Errorf("dhttest: peer %d: %w", p.Index, err)
		}
		if p.ID != (dht.ID{}) && p.ID != id.ID() {
			return fmt.Errorf("dhttest: peer %d restarted as %s, want %s", p.Index, id.ID().Short(), p.ID.Short())
		}
		p.ID, p.Addr = id.ID(), t.Local().Addr
		tr, p.meter = t, t.Meter()
	}
	cfg := c.opts.Node
	cfg.Transport = tr
	cfg.Bootstrap = bootstrap
	cfg.Seed = c.opts.Seed*1_000_003 + uint64(p.Index) + 1
	cfg.Logger = c.opts.Logger.With("peer", p.Index)
	n, err := dht.New(cfg)
	if err != nil {
		return fmt.Errorf("dhttest: peer %d: %w", p.Index, err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }() // joined in stop
	c.mu.Lock()
	p.node, p.done, p.running = n, done, true
	c.mu.Unlock()
	return nil
}

// Peers returns every peer, running or not.
func (c *Cluster) Peers() []*Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.peers)
}

// Peer returns peer i.
func (c *Cluster) Peer(i int) *Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peers[i]
}

// Live returns the running peers.
func (c *Cluster) Live() []*Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []*Peer
	for _, p := range c.peers {
		if p.running {
			live = append(live, p)
		}
	}
	return live
}

// Stop kills peer i abruptly: its connections drop and the others find
// out through their failure detectors. The peer remembers its neighbours'
// addresses for a restart, as a peer cache would.
func (c *Cluster) Stop(i int) {
	p := c.Peer(i)
	node := p.Node()
	if node == nil {
		return
	}
	nb := node.Neighbours()
	var known []string
	for _, s := range nb.Successors {
		known = append(known, s.Addr)
	}
	if nb.Predecessor != nil {
		known = append(known, nb.Predecessor.Addr)
	}
	node.Close()
	if err := <-p.done; err != nil {
		c.tb.Errorf("dhttest: peer %d: run: %v", i, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Kind == TLS {
		t := p.meter.Total()
		c.gone.Sent += t.Sent
		c.gone.Received += t.Received
		c.gone.Calls += t.Calls
	}
	p.node, p.running, p.known = nil, false, known
}

// Leave makes peer i leave gracefully.
func (c *Cluster) Leave(ctx context.Context, i int) error {
	p := c.Peer(i)
	node := p.Node()
	if node == nil {
		return nil
	}
	err := node.Leave(ctx)
	if rerr := <-p.done; rerr != nil {
		err = errors.Join(err, rerr)
	}
	c.mu.Lock()
	p.node, p.running = nil, false
	c.mu.Unlock()
	return err
}

// Restart starts stopped peer i again with the same identity (and, if it
// is free, the same address). It bootstraps from the neighbours it
// remembers plus two random peers.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	p := c.peers[i]
	if p.running {
		c.mu.Unlock()
		return nil
	}
	boot := append(slices.Clone(p.known), c.randomAddrsLocked(2, p, len(c.peers))...)
	c.mu.Unlock()
	return c.start(p, boot)
}

// Partition splits the in-memory network into groups of peer indexes;
// peers in no group are cut from all groups.
func (c *Cluster) Partition(groups ...[]int) {
	var gs [][]string
	for _, g := range groups {
		var addrs []string
		for _, i := range g {
			addrs = append(addrs, c.Peer(i).Addr)
		}
		gs = append(gs, addrs)
	}
	c.Net.Partition(gs...)
}

// Heal removes the partition.
func (c *Cluster) Heal() { c.Net.Heal() }

// Traffic returns the payload traffic of the whole cluster so far.
func (c *Cluster) Traffic() dht.Traffic {
	if c.Net != nil {
		return c.Net.Traffic()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.gone
	for _, p := range c.peers {
		if p.running {
			m := p.meter.Total()
			t.Sent += m.Sent
			t.Received += m.Received
			t.Calls += m.Calls
		}
	}
	return t
}

// WaitFor polls cond until it returns nil or timeout passes, and returns
// cond's last error then. Inside testing/synctest the timeout is virtual.
func (c *Cluster) WaitFor(what string, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	poll := min(max(timeout/200, time.Millisecond), 100*time.Millisecond)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dhttest: waiting %v for %s: %w", timeout, what, err)
		}
		time.Sleep(poll) // a poll interval, not a stand-in for a condition
	}
}

// WaitConverged waits until Converged holds.
func (c *Cluster) WaitConverged(timeout time.Duration) error {
	return c.WaitFor("the ring to converge", timeout, c.Converged)
}

// sortedLive returns the running peers in ring order.
func (c *Cluster) sortedLive() []*Peer {
	live := c.Live()
	slices.SortFunc(live, func(a, b *Peer) int { return a.ID.Compare(b.ID) })
	return live
}

// Converged reports (as nil) whether every running peer's successor list
// is the true next min(r, live−1) running peers and its predecessor the
// true previous one.
func (c *Cluster) Converged() error {
	live := c.sortedLive()
	var errs []error
	bad := 0
	for i, p := range live {
		node := p.Node()
		if node == nil {
			continue
		}
		nb := node.Neighbours()
		want := make([]dht.ID, 0, c.r)
		for k := 1; k < len(live) && k <= c.r; k++ {
			want = append(want, live[(i+k)%len(live)].ID)
		}
		got := make([]dht.ID, len(nb.Successors))
		for k, s := range nb.Successors {
			got[k] = s.ID
		}
		ok := slices.Equal(got, want)
		if len(live) > 1 && (nb.Predecessor == nil || nb.Predecessor.ID != live[(i+len(live)-1)%len(live)].ID) {
			ok = false
		}
		if !ok {
			bad++
			if len(errs) < 3 {
				errs = append(errs, fmt.Errorf("peer %d (%s): %d successors, first %s; want %d, first %s", p.Index, p.ID.Short(), len(got), first(got), len(want), first(want)))
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d peers not converged: %w", bad, len(live), errors.Join(errs...))
	}
	return nil
}

func first(ids []dht.ID) string {
	if len(ids) == 0 {
		return "none"
	}
	return ids[0].Short()
}

// Owners returns the true first n running peers clockwise from key.
func (c *Cluster) Owners(key dht.ID, n int) []dht.Peer {
	live := c.sortedLive()
	i, _ := slices.BinarySearchFunc(live, key, func(p *Peer, k dht.ID) int { return p.ID.Compare(k) })
	var out []dht.Peer
	for k := 0; k < n && k < len(live); k++ {
		p := live[(i+k)%len(live)]
		out = append(out, dht.Peer{ID: p.ID, Addr: p.Addr})
	}
	return out
}

// LookupResult sums up CheckLookups.
type LookupResult struct {
	Lookups int
	Wrong   int
	Hops    []int // per lookup, sorted
}

// MeanHops returns the mean hop count.
func (r LookupResult) MeanHops() float64 {
	if len(r.Hops) == 0 {
		return 0
	}
	s := 0
	for _, h := range r.Hops {
		s += h
	}
	return float64(s) / float64(len(r.Hops))
}

// Percentile returns the p-th percentile (0..100) of the hop counts.
func (r LookupResult) Percentile(p float64) int {
	if len(r.Hops) == 0 {
		return 0
	}
	return r.Hops[min(len(r.Hops)-1, int(p/100*float64(len(r.Hops))))]
}

// CheckLookups has every running peer look up perPeer random keys (from
// the cluster's seeded randomness) and compares each answer's first n
// peers with the true owners. It returns an error describing the first
// wrong answers.
func (c *Cluster) CheckLookups(ctx context.Context, perPeer, n int) (LookupResult, error) {
	live := c.Live()
	type job struct {
		p   *Peer
		key dht.ID
	}
	var jobs []job
	c.mu.Lock()
	for _, p := range live {
		for range perPeer {
			var k dht.ID
			for i := range k {
				k[i] = byte(c.rng.Uint32())
			}
			jobs = append(jobs, job{p, k})
		}
	}
	c.mu.Unlock()
	var (
		mu   sync.Mutex
		res  = LookupResult{Lookups: len(jobs)}
		errs []error
		wg   sync.WaitGroup
		next = make(chan job)
	)
	for range min(32, len(jobs)) {
		wg.Go(func() {
			for j := range next {
				node := j.p.Node()
				if node == nil {
					continue
				}
				got, st, err := node.Lookup(ctx, j.key, n)
				want := c.Owners(j.key, n)
				ok := err == nil && slices.EqualFunc(got, want, func(a, b dht.Peer) bool { return a.ID == b.ID })
				mu.Lock()
				res.Hops = append(res.Hops, st.Hops)
				if !ok {
					res.Wrong++
					if len(errs) < 3 {
						errs = append(errs, fmt.Errorf("peer %d: lookup %s: got %v (err %v), want %v", j.p.Index, j.key.Short(), got, err, want))
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	slices.Sort(res.Hops)
	if res.Wrong > 0 {
		return res, fmt.Errorf("%d of %d lookups wrong: %w", res.Wrong, res.Lookups, errors.Join(errs...))
	}
	return res, nil
}

// Close stops every running peer.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, p := range c.Peers() {
		if p.Running() {
			wg.Go(func() { c.Stop(p.Index) })
		}
	}
	wg.Wait()
}
