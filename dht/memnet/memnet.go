// Package memnet is an in-memory network for dht: transports that call
// each other's handlers directly, with seeded per-message delays and
// drops, partitions and byte counting, so rings of thousands of peers run
// in one test process (and, inside testing/synctest, in virtual time).
package memnet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/voicering/voicering/dht"
)

// Config configures a Network.
type Config struct {
	// Seed seeds delays and drops, so a run replays. Zero: 1.
	Seed uint64
	// Delay is the one-way latency of every message. Zero: none.
	Delay time.Duration
	// Jitter adds a uniformly random [0, Jitter) to each message's delay.
	Jitter time.Duration
	// Drop is the probability that a call is lost; the caller then waits
	// until its context ends, as on a real network.
	Drop float64
	// MaxMessage bounds request and response bodies.
	// Zero: dht.DefaultMaxMessage.
	MaxMessage int
}

// Network connects in-memory transports by address.
type Network struct {
	cfg Config

	mu      sync.Mutex
	rng     *rand.Rand
	nodes   map[string]*Transport
	cut     map[[2]string]bool
	group   map[string]int // partition group by address; nil: none
	total   dht.Traffic
	nextTag int
}

// New returns an empty network.
func New(cfg Config) *Network {
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = dht.DefaultMaxMessage
	}
	return &Network{
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+1)),
		nodes: make(map[string]*Transport),
		cut:   make(map[[2]string]bool),
	}
}

// Listen returns a transport for node id at addr ("" picks "mem-N").
// The address is taken until the transport is closed.
func (nw *Network) Listen(id dht.ID, addr string) (*Transport, error) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if addr == "" {
		nw.nextTag++
		addr = fmt.Sprintf("mem-%d", nw.nextTag)
	}
	if nw.nodes[addr] != nil {
		return nil, fmt.Errorf("memnet: listen %s: address in use", addr)
	}
	t := &Transport{nw: nw, self: dht.Peer{ID: id, Addr: addr}}
	nw.nodes[addr] = t
	return t, nil
}

// Disconnect cuts the link between addresses a and b both ways.
func (nw *Network) Disconnect(a, b string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut[[2]string{a, b}] = true
	nw.cut[[2]string{b, a}] = true
}

// Connect restores the link between a and b.
func (nw *Network) Connect(a, b string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	delete(nw.cut, [2]string{a, b})
	delete(nw.cut, [2]string{b, a})
}

// Partition splits the network: addresses in different groups cannot
// reach each other; addresses in no group reach only each other.
func (nw *Network) Partition(groups ...[]string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.group = make(map[string]int)
	for i, g := range groups {
		for _, a := range g {
			nw.group[a] = i + 1
		}
	}
}

// Heal removes the partition (links cut by Disconnect stay cut).
func (nw *Network) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.group = nil
}

// Traffic returns the payload bytes and calls the network has carried.
func (nw *Network) Traffic() dht.Traffic {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.total
}

// route finds the destination of a call and draws its fate.
func (nw *Network) route(from, to string) (dst *Transport, out, back time.Duration, drop bool, err error) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	dst = nw.nodes[to]
	switch {
	case dst == nil:
		return nil, 0, 0, false, fmt.Errorf("%w: no peer listens at %s", dht.ErrUnreachable, to)
	case nw.cut[[2]string{from, to}] || nw.group != nil && nw.group[from] != nw.group[to]:
		return nil, 0, 0, false, fmt.Errorf("%w: %s cannot reach %s", dht.ErrUnreachable, from, to)
	}
	delay := func() time.Duration {
		d := nw.cfg.Delay
		if nw.cfg.Jitter > 0 {
			d += time.Duration(nw.rng.Int64N(int64(nw.cfg.Jitter)))
		}
		return d
	}
	out, back = delay(), delay()
	drop = nw.cfg.Drop > 0 && nw.rng.Float64() < nw.cfg.Drop
	return dst, out, back, drop, nil
}

func (nw *Network) count(bytes int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.total.Sent += uint64(bytes)
	nw.total.Received += uint64(bytes)
}

func (nw *Network) countCall() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.total.Calls++
}

// Transport is one node's attachment to a Network.
type Transport struct {
	nw   *Network
	self dht.Peer
	met  dht.Meter

	mu      sync.Mutex
	d       dht.Dispatcher
	serving bool
	closed  bool
	calls   sync.WaitGroup // dispatches in progress
}

var _ dht.Transport = (*Transport)(nil)

// Local returns the node's ID and address.
func (t *Transport) Local() dht.Peer { return t.self }

// Meter returns the transport's traffic counters.
func (t *Transport) Meter() *dht.Meter { return &t.met }

// Serve answers calls with d until ctx ends, then waits for calls in
// progress.
func (t *Transport) Serve(ctx context.Context, d dht.Dispatcher) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return dht.ErrClosed
	}
	if t.serving {
		t.mu.Unlock()
		return fmt.Errorf("memnet: %s already serving", t.self.Addr)
	}
	t.d, t.serving = d, true
	t.mu.Unlock()
	<-ctx.Done()
	t.mu.Lock()
	t.serving = false
	t.mu.Unlock()
	t.calls.Wait()
	return nil
}

// begin admits one incoming call if the transport serves.
func (t *Transport) begin() (dht.Dispatcher, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.serving {
		return nil, false
	}
	t.calls.Add(1)
	return t.d, true
}

func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// Call delivers a call to the transport listening at to.Addr, after the
// network's delay, and returns its answer after another.
func (t *Transport) Call(ctx context.Context, to dht.Peer, method string, body []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("dht: call %s on %s: %w", method, to, err)
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return fail(dht.ErrClosed)
	}
	if len(body) > t.nw.cfg.MaxMessage {
		return fail(fmt.Errorf("%w: request of %d bytes", dht.ErrTooLarge, len(body)))
	}
	t.nw.countCall()
	dst, out, back, drop, err := t.nw.route(t.self.Addr, to.Addr)
	if err != nil {
		return fail(err)
	}
	sent := len(method) + len(body)
	t.nw.count(sent)
	if drop {
		<-ctx.Done()
		return fail(ctx.Err())
	}
	if err := wait(ctx, out); err != nil {
		return fail(err)
	}
	d, ok := dst.begin()
	if !ok {
		return fail(fmt.Errorf("%w: %s is not serving", dht.ErrUnreachable, to.Addr))
	}
	if !to.ID.IsZero() && to.ID != dst.self.ID {
		dst.calls.Done()
		return fail(fmt.Errorf("%w: %s answered as node %s", dht.ErrPeerID, to, dst.self.ID.Short()))
	}
	resp, herr := d.Dispatch(ctx, &dht.Request{From: t.self.ID, Version: dht.ProtocolVersion, Method: method, Body: slices.Clone(body)})
	dst.calls.Done()
	if herr == nil && len(resp) > t.nw.cfg.MaxMessage {
		herr = fmt.Errorf("%w: response of %d bytes", dht.ErrTooLarge, len(resp))
	}
	t.met.Add(dst.self.ID, sent, len(resp))
	dst.met.Add(t.self.ID, len(resp), sent)
	t.nw.count(len(resp))
	if err := wait(ctx, back); err != nil {
		return fail(err)
	}
	if herr != nil {
		return nil, dht.NewRemoteError(to, method, herr)
	}
	return slices.Clone(resp), nil
}

// Close releases the address; calls to and from the transport fail.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.nw.mu.Lock()
	defer t.nw.mu.Unlock()
	if t.nw.nodes[t.self.Addr] == t {
		delete(t.nw.nodes, t.self.Addr)
	}
	return nil
}
