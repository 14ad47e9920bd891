package dht

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Node. Durations scale together: simulations shrink
// them all.
type Config struct {
	// Transport carries the node's calls; the node closes it (if it has
	// a Close method) in Close. Required.
	Transport Transport
	// Bootstrap lists addresses of peers to join through and to check
	// against for a split ring. Empty: the node starts a new ring (or
	// waits to be found).
	Bootstrap []string
	// Successors is the length of the successor list. Zero: 16, longer
	// than the widest coding scheme plus margin.
	Successors int
	// Alpha bounds the requests a lookup keeps in flight. Zero: 3.
	Alpha int
	// StabilizePeriod spaces stabilize/notify rounds. Zero: 1s.
	StabilizePeriod time.Duration
	// FixFingersPeriod spaces finger refreshes (one lookup each).
	// Zero: 1s.
	FixFingersPeriod time.Duration
	// PingPeriod is the keep-alive period: the predecessor and successors
	// not heard from for this long are pinged. Zero: 2s.
	PingPeriod time.Duration
	// MergePeriod spaces lookups of the node's own ID through Bootstrap
	// and a random finger, which merge rings split by a partition or
	// tangled by concurrent joins. Zero: 15s; negative: never.
	MergePeriod time.Duration
	// MinTimeout and MaxTimeout bound the RTT-based timeout of ring calls
	// (srtt + 4·rttvar, doubled per consecutive failure); InitialTimeout
	// applies before the first RTT sample. Zero: 200ms, 10s and 1s.
	MinTimeout, MaxTimeout, InitialTimeout time.Duration
	// DeadAfter is the number of consecutive failures that turn a
	// suspected peer dead. Zero: 3.
	DeadAfter int
	// DeadMemory is how long a dead peer is ignored when other peers
	// still list it (it is revived at once if it calls or answers). Long
	// enough for the news to spread through the successor lists, short
	// enough that a restarted peer is taken back soon. Zero: 5s.
	DeadMemory time.Duration
	// PeerCache is a file the node keeps the addresses of the peers it
	// knows in (successors, predecessor, fingers): rewritten atomically
	// every PeerCachePeriod when they changed and when the node stops,
	// and read by New, whose addresses the node joins through beside
	// Bootstrap. After a mass restart peers so rejoin through peers they
	// knew rather than all through the same few bootstrap peers. A
	// missing file holds no peers; an unreadable one is logged and
	// ignored. Empty: no cache.
	PeerCache string
	// PeerCachePeriod spaces the checks whether PeerCache needs
	// rewriting. Zero: 30s.
	PeerCachePeriod time.Duration
	// Backoff spaces join and rejoin attempts. Zero: 0.5s doubling to 5min.
	Backoff Backoff
	// Seed seeds the node's randomness (jitter), so a simulation replays.
	// Zero: random.
	Seed uint64
	// Logger receives one line per ring event (joined, successor or
	// predecessor changed, peer suspected, peer dead). Nil: discarded.
	Logger *slog.Logger
}

func (c *Config) fill() error {
	if c.Transport == nil {
		return errors.New("dht: node: no Transport")
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d == 0 {
			*d = v
		}
		if *d < 0 {
			return fmt.Errorf("dht: node: negative %s", name)
		}
		return nil
	}
	if c.Successors == 0 {
		c.Successors = 16
	}
	if c.Successors < 1 || c.Successors > maxWirePeers {
		return fmt.Errorf("dht: node: Successors = %d, want 1..%d", c.Successors, maxWirePeers)
	}
	if c.Alpha == 0 {
		c.Alpha = 3
	}
	if c.Alpha < 1 {
		return fmt.Errorf("dht: node: Alpha = %d, want ≥ 1", c.Alpha)
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = 3
	}
	if c.DeadAfter < 1 {
		return fmt.Errorf("dht: node: DeadAfter = %d, want ≥ 1", c.DeadAfter)
	}
	if c.MergePeriod == 0 {
		c.MergePeriod = 15 * time.Second
	}
	for _, e := range []error{
		def(&c.StabilizePeriod, time.Second, "StabilizePeriod"),
		def(&c.FixFingersPeriod, time.Second, "FixFingersPeriod"),
		def(&c.PingPeriod, 2*time.Second, "PingPeriod"),
		def(&c.MinTimeout, 200*time.Millisecond, "MinTimeout"),
		def(&c.MaxTimeout, 10*time.Second, "MaxTimeout"),
		def(&c.InitialTimeout, time.Second, "InitialTimeout"),
		def(&c.DeadMemory, 5*time.Second, "DeadMemory"),
		def(&c.PeerCachePeriod, 30*time.Second, "PeerCachePeriod"),
	} {
		if e != nil {
			return e
		}
	}
	if c.MinTimeout > c.MaxTimeout {
		return fmt.Errorf("dht: node: MinTimeout %v over MaxTimeout %v", c.MinTimeout, c.MaxTimeout)
	}
	if c.Backoff.Initial < 0 || c.Backoff.Max < 0 {
		return errors.New("dht: node: negative Backoff")
	}
	c.Backoff = c.Backoff.withDefaults()
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Bootstrap = slices.Clone(c.Bootstrap)
	return nil
}

// Node is one peer of the ring: it keeps its predecessor, successor list
// and fingers up to date, answers lookups, and serves the methods upper
// layers register on its Mux over the same transport.
type Node struct {
	cfg  Config
	tr   Transport
	self Peer
	mux  Mux
	log  *slog.Logger
	fd   detector

	rmu sync.Mutex
	rng *rand.Rand

	mu         sync.Mutex
	pred       Peer
	hasPred    bool
	succ       []Peer
	fingers    [8 * IDSize]Peer
	hasFinger  [8 * IDSize]bool
	nextFinger int
	joined     bool
	seed       bool // joins reached no ring: may answer lookups alone
	subs       map[*subscription]struct{}
	lost       map[ID]*lostPeer // dead peers retried with back-off, to heal partitions
	cached     []string         // addresses read from the peer cache, to join through
	joinNow    chan struct{}    // a peer that lists us notified us while we wait to join

	cacheMu      sync.Mutex
	cacheWritten []string // what the peer cache holds

	lmu     sync.Mutex
	cancel  context.CancelFunc
	running bool
	closed  bool
	done    chan struct{}
}

// New checks cfg, fills its defaults and returns a node ready to Run.
func New(cfg Config) (*Node, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		tr:      cfg.Transport,
		self:    cfg.Transport.Local(),
		log:     cfg.Logger,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		subs:    make(map[*subscription]struct{}),
		lost:    make(map[ID]*lostPeer),
		done:    make(chan struct{}),
		joinNow: make(chan struct{}, 1),
		fd: detector{
			min: cfg.MinTimeout, max: cfg.MaxTimeout, initial: cfg.InitialTimeout,
			deadAfter: cfg.DeadAfter, memory: cfg.DeadMemory, m: make(map[ID]*health),
		},
	}
	if n.self.Addr == "" {
		return nil, errors.New("dht: node: transport has no address to serve on")
	}
	n.log = n.log.With("node", n.self.ID.Short())
	if cfg.PeerCache != "" {
		addrs, err := readPeerCache(cfg.PeerCache)
		if err != nil {
			n.log.Warn("peer cache ignored", "err", err)
		}
		n.cached, n.cacheWritten = addrs, addrs
	}
	n.mux.Handle(methodPing, func(context.Context, *Request) ([]byte, error) { return nil, nil })
	n.mux.Handle(methodState, n.handleState)
	n.mux.Handle(methodNotify, n.handleNotify)
	n.mux.Handle(methodFind, n.handleFind)
	n.mux.Handle(methodLeave, n.handleLeave)
	return n, nil
}

// Self returns the node's ID and address.
func (n *Node) Self() Peer { return n.self }

// Handle registers h for method on the node's transport. Method names
// starting with "ring." are the node's own; registering one panics.
func (n *Node) Handle(method string, h Handler) {
	if strings.HasPrefix(method, "ring.") {
		panic("dht: Handle: method names starting with \"ring.\" are reserved")
	}
	n.mux.Handle(method, h)
}

// Call calls method on peer to over the node's transport. Failures to
// reach the peer count towards its suspicion; the caller's ctx bounds the
// call.
func (n *Node) Call(ctx context.Context, to Peer, method string, body []byte) ([]byte, error) {
	resp, err := n.tr.Call(ctx, to, method, body)
	n.observe(ctx, to, 0, err)
	return resp, err
}

// Run serves and maintains the ring until ctx ends or Close is called.
// It joins through Config.Bootstrap, retrying with back-off.
func (n *Node) Run(ctx context.Context) error {
	n.lmu.Lock()
	switch {
	case n.closed:
		n.lmu.Unlock()
		return ErrClosed
	case n.running:
		n.lmu.Unlock()
		return errors.New("dht: node already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	n.running, n.cancel = true, cancel
	n.lmu.Unlock()
	defer close(n.done)
	defer cancel()

	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() {
		if err := n.tr.Serve(ctx, dispatcher{n}); err != nil {
			serveErr = err
			cancel()
		}
	})
	wg.Go(func() { n.stabilizeLoop(ctx) })
	wg.Go(func() { n.periodic(ctx, n.cfg.FixFingersPeriod, n.fixFingers) })
	wg.Go(func() { n.periodic(ctx, n.cfg.PingPeriod, n.keepAlive) })
	if n.cfg.MergePeriod > 0 {
		wg.Go(func() { n.periodic(ctx, n.cfg.MergePeriod, n.merge) })
	}
	if n.cfg.PeerCache != "" {
		wg.Go(func() { n.periodic(ctx, n.cfg.PeerCachePeriod, n.savePeerCache) })
	}
	wg.Wait()
	if n.cfg.PeerCache != "" {
		n.savePeerCache(context.Background()) // what this run knew last
	}
	return serveErr
}

// Close stops the node abruptly (peers find out through their failure
// detectors), waits for Run to return and closes the transport.
func (n *Node) Close() error {
	n.lmu.Lock()
	if n.closed {
		n.lmu.Unlock()
		return nil
	}
	n.closed = true
	cancel, running := n.cancel, n.running
	n.lmu.Unlock()
	if running {
		cancel()
		<-n.done
	}
	if c, ok := n.tr.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Leave tells the predecessor and the first successor that this node is
// leaving, so they splice it out at once, then closes the node. Upper
// layers hand their data over before calling it.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	msg := stateMsg{HasPred: n.hasPred, Pred: n.pred, Successors: slices.Clone(n.succ)}
	var to []Peer
	if n.hasPred {
		to = append(to, n.pred)
	}
	if len(n.succ) > 0 && (!n.hasPred || n.succ[0].ID != n.pred.ID) {
		to = append(to, n.succ[0])
	}
	n.mu.Unlock()
	errs := make([]error, len(to))
	var wg sync.WaitGroup
	for i, p := range to {
		wg.Go(func() { _, errs[i] = n.ctl(ctx, p, methodLeave, msg.encode()) })
	}
	wg.Wait()
	n.log.Info("left the ring")
	cerr := n.Close()
	if err := errors.Join(errors.Join(errs...), cerr); err != nil {
		return fmt.Errorf("dht: leave: %w", err)
	}
	return nil
}

// dispatcher notes every authenticated caller as alive, then dispatches.
type dispatcher struct{ n *Node }

func (d dispatcher) Dispatch(ctx context.Context, req *Request) ([]byte, error) {
	if !req.From.IsZero() && req.From != d.n.self.ID {
		d.n.fd.ok(req.From, 0, time.Now())
	}
	return d.n.mux.Dispatch(ctx, req)
}

// ctl makes a small ring call with the RTT-based timeout and feeds the
// failure detector.
func (n *Node) ctl(ctx context.Context, to Peer, method string, body []byte) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, n.fd.timeout(to.ID))
	defer cancel()
	start := time.Now()
	resp, err := n.tr.Call(cctx, to, method, body)
	n.observe(ctx, to, time.Since(start), err)
	return resp, err
}

// observe feeds a call's outcome to the failure detector.
func (n *Node) observe(ctx context.Context, to Peer, rtt time.Duration, err error) {
	if to.ID.IsZero() || to.ID == n.self.ID {
		return
	}
	now := time.Now()
	var re *RemoteError
	switch {
	case err == nil, errors.As(err, &re):
		if err != nil {
			rtt = 0
		}
		// Back from suspected or dead; not a peer that just left and
		// still answers (the detector ignores it then, see markLeft).
		if old := n.fd.ok(to.ID, rtt, now); old != Alive && n.usable(to.ID) {
			n.log.Info("peer alive", "peer", to)
			n.mu.Lock()
			delete(n.lost, to.ID)
			n.mu.Unlock()
		}
	case ctx.Err() != nil:
		// our own cancellation says nothing about the peer
	default:
		old, cur := n.fd.fail(to.ID, now)
		if old == cur {
			return
		}
		switch cur {
		case Suspected:
			n.log.Info("peer suspected", "peer", to, "err", err)
			n.remember(to, now) // it may drop out of our tables before it is declared dead
		case Dead:
			n.log.Info("peer dead", "peer", to, "err", err)
			n.forget(to.ID)
		}
	}
}

func (n *Node) usable(id ID) bool { return n.fd.usable(id, time.Now()) }

// forget removes id from every table.
func (n *Node) forget(id ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	succ := slices.DeleteFunc(slices.Clone(n.succ), func(p Peer) bool { return p.ID == id })
	pred, hasPred := n.pred, n.hasPred
	if hasPred && pred.ID == id {
		hasPred = false
	}
	for i := range n.fingers {
		if n.hasFinger[i] && n.fingers[i].ID == id {
			n.hasFinger[i] = false
		}
	}
	n.setLocked(pred, hasPred, succ)
}

// maxLost bounds the dead peers remembered for retries, and
// maxLostAttempts the retries of each (the last ones MaxBackoff apart).
const (
	maxLost         = 64
	maxLostAttempts = 16
)

type lostPeer struct {
	p       Peer
	attempt int
	next    time.Time
}

// remember keeps a dead peer to retry with back-off: if it was cut off
// by a partition, reaching it again is how the two rings find each other.
func (n *Node) remember(p Peer, now time.Time) {
	d := n.backoff(0)
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.lost) >= maxLost {
		var oldest ID
		var first *lostPeer
		for id, l := range n.lost {
			if first == nil || l.attempt > first.attempt {
				oldest, first = id, l
			}
		}
		delete(n.lost, oldest)
	}
	if _, ok := n.lost[p.ID]; !ok {
		n.lost[p.ID] = &lostPeer{p: p, next: now.Add(d)}
	}
}

// dueLost returns a remembered dead peer due for a retry, and schedules
// its next one.
func (n *Node) dueLost(now time.Time) (Peer, bool) {
	n.mu.Lock()
	var due *lostPeer
	for _, l := range n.lost {
		if !now.Before(l.next) && (due == nil || l.next.Before(due.next)) {
			due = l
		}
	}
	if due == nil {
		n.mu.Unlock()
		return Peer{}, false
	}
	due.attempt++
	attempt := due.attempt
	if attempt > maxLostAttempts {
		delete(n.lost, due.p.ID) // gone for good, most likely
	}
	n.mu.Unlock()
	d := n.backoff(attempt)
	n.mu.Lock()
	due.next = now.Add(d)
	n.mu.Unlock()
	return due.p, true
}

// setLocked installs a new neighbourhood, logs what changed and tells
// the subscribers. n.mu is held.
func (n *Node) setLocked(pred Peer, hasPred bool, succ []Peer) {
	if len(succ) > n.cfg.Successors {
		succ = succ[:n.cfg.Successors]
	}
	predChanged := hasPred != n.hasPred || (hasPred && pred != n.pred)
	succChanged := !slices.Equal(succ, n.succ)
	if !predChanged && !succChanged {
		return
	}
	first := func(ps []Peer) Peer {
		if len(ps) == 0 {
			return Peer{}
		}
		return ps[0]
	}
	if f := first(succ); f != first(n.succ) {
		if len(succ) > 0 {
			n.log.Info("successor changed", "successor", f)
		} else {
			n.log.Info("successor changed", "successor", "none")
		}
	}
	if predChanged {
		if hasPred {
			n.log.Info("predecessor changed", "predecessor", pred)
		} else {
			n.log.Info("predecessor changed", "predecessor", "none")
		}
	}
	n.pred, n.hasPred, n.succ = pred, hasPred, succ
	nb := n.neighboursLocked()
	for s := range n.subs {
		s.send(nb)
	}
}

// liveSuccessorsLocked returns the successors not suspected or dead.
func (n *Node) liveSuccessorsLocked() []Peer {
	live := make([]Peer, 0, len(n.succ))
	for _, p := range n.succ {
		if n.usable(p.ID) {
			live = append(live, p)
		}
	}
	return live
}

// periodic runs f every period (±25% jitter) until ctx ends.
func (n *Node) periodic(ctx context.Context, period time.Duration, f func(context.Context)) {
	for sleep(ctx, n.jitter(period)) {
		f(ctx)
	}
}

func (n *Node) jitter(d time.Duration) time.Duration {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	return d*3/4 + time.Duration(n.rng.Int64N(int64(d)/2+1))
}

func (n *Node) backoff(attempt int) time.Duration {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	return n.cfg.Backoff.Delay(attempt, n.rng)
}

// sleep waits d or until ctx ends, reporting whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// bootstrapPeers returns the bootstrap addresses as peers of unknown ID.
func (n *Node) bootstrapPeers() []Peer {
	var ps []Peer
	for _, a := range n.cfg.Bootstrap {
		if a != n.self.Addr {
			ps = append(ps, Peer{Addr: a})
		}
	}
	return ps
}

// contacts returns the peers to join through: the bootstrap peers, then
// those of the peer cache, as peers of unknown ID.
func (n *Node) contacts() []Peer {
	ps := n.bootstrapPeers()
	for _, a := range n.cached {
		if p := (Peer{Addr: a}); a != n.self.Addr && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// needsJoin reports whether the node knows no live successor but has
// somewhere to join through. A predecessor alone does not do: a
// restarted peer is notified by its old predecessor, which still lists
// it, long before it knows a successor.
func (n *Node) needsJoin() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.liveSuccessorsLocked()) > 0 {
		return false
	}
	if n.readyLocked() && n.hasPred && n.usable(n.pred.ID) {
		return false // a ring of two forming: stabilize through the predecessor
	}
	return len(n.contacts()) > 0
}

// readyLocked reports whether the node may answer lookups and take a
// notifying peer as its successor: it has joined, or it has no ring to
// join (no bootstrap peers), or its joins reached no peer at all (a
// whole ring restarting needs first peers). A peer waiting to join must
// not answer "I am alone": others still list it from its previous run
// and would take that answer as their successor, and a restarted peer
// that took its notifying predecessor as its successor would walk back
// around the whole ring, maxWalkBack peers per stabilize round.
func (n *Node) readyLocked() bool {
	return n.joined || n.seed || len(n.contacts()) == 0
}

// errJoining answers lookups sent to a peer still joining the ring.
var errJoining = errors.New("dht: joining the ring, cannot answer lookups yet")

// seedAfter is how many join attempts in a row must reach no peer at all
// before a node answers lookups on its own, as the first of a new ring.
const seedAfter = 3

// stabilizeLoop joins (and rejoins after losing every neighbour) with
// back-off, and otherwise stabilizes every StabilizePeriod.
func (n *Node) stabilizeLoop(ctx context.Context) {
	attempt := 0
	if n.needsJoin() && !sleep(ctx, n.backoff(0)) { // desynchronize a mass restart
		return
	}
	unanswered := 0 // join attempts in a row that reached no peer
	for {
		if n.needsJoin() {
			if answered, err := n.join(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				if !answered {
					unanswered++
				} else {
					unanswered = 0
				}
				if unanswered >= seedAfter {
					n.mu.Lock()
					if !n.seed {
						n.log.Info("no ring reachable: answering lookups as a first peer")
					}
					n.seed = true
					n.mu.Unlock()
				}
				d := n.backoff(attempt)
				attempt++
				n.log.Debug("join failed", "attempt", attempt, "retry_in", d, "err", err)
				// The back-off spreads the joins of a mass restart; a
				// notify from a peer that still lists us cuts it short:
				// the ring is there, and that peer knows where we belong.
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				case <-n.joinNow:
					t.Stop()
				}
				continue
			}
			attempt, unanswered = 0, 0
		}
		n.stabilize(ctx)
		if !sleep(ctx, n.jitter(n.cfg.StabilizePeriod)) {
			return
		}
	}
}

// join looks up the node's own ID through the bootstrap peers (and any
// peer it still knows: a predecessor that notified it, fingers) and takes
// the answer as its successor list. answered reports whether any peer
// answered a lookup step.
func (n *Node) join(ctx context.Context) (answered bool, err error) {
	n.mu.Lock()
	starts := n.contacts()
	if n.hasPred && n.usable(n.pred.ID) {
		starts = append([]Peer{n.pred}, starts...) // it lists us: it knows where we belong
	}
	for i := len(n.fingers) - 1; i >= 0; i-- {
		if n.hasFinger[i] && n.usable(n.fingers[i].ID) && !slices.Contains(starts, n.fingers[i]) {
			starts = append(starts, n.fingers[i])
		}
	}
	n.mu.Unlock()
	jf := &joinFinder{n: n}
	peers, st, err := iterate(ctx, jf, n.self.ID, n.cfg.Successors+1, n.cfg.Alpha, starts)
	if err != nil {
		return jf.answered.Load(), fmt.Errorf("dht: join: %w", err)
	}
	peers = slices.DeleteFunc(peers, func(p Peer) bool { return p.ID == n.self.ID })
	if len(peers) == 0 {
		return true, errors.New("dht: join: only found myself")
	}
	n.mu.Lock()
	n.setLocked(n.pred, n.hasPred && n.usable(n.pred.ID), peers)
	n.joined = true
	n.mu.Unlock()
	n.log.Info("joined", "successor", peers[0], "hops", st.Hops)
	n.ctl(ctx, peers[0], methodNotify, notifyMsg{Addr: n.self.Addr}.encode())
	return true, nil
}

// joinFinder runs a join's lookup and notes whether any peer answered.
type joinFinder struct {
	n        *Node
	answered atomic.Bool
}

func (j *joinFinder) find(ctx context.Context, to Peer, key ID, count int) (findResp, error) {
	r, err := j.n.find(ctx, to, key, count)
	if err == nil {
		j.answered.Store(true) // a ring exists: peers joining too do not count
	}
	return r, err
}

func (j *joinFinder) hedge(to Peer) time.Duration { return j.n.hedge(to) }

// stabilize asks the first live successor for its predecessor and
// successor list, adopts a closer successor if one joined, rebuilds the
// successor list from the successor's, and notifies the successor.
func (n *Node) stabilize(ctx context.Context) {
	for range n.cfg.Successors + 1 {
		n.mu.Lock()
		live := n.liveSuccessorsLocked()
		if len(live) == 0 && n.hasPred && n.usable(n.pred.ID) {
			live = []Peer{n.pred} // a ring of two forming, or every successor lost
		}
		n.mu.Unlock()
		if len(live) == 0 {
			return
		}
		s := live[0]
		b, err := n.ctl(ctx, s, methodState, nil)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue // s is now suspected (or dead): try the next one
		}
		st, err := decodeState(b)
		if err != nil {
			n.log.Debug("bad state answer", "peer", s, "err", err)
			return
		}
		// Walk back over peers that joined between us and s, so a burst
		// of joins settles in one round instead of one per round.
		walked := 0
		for range maxWalkBack {
			if !st.HasPred || st.Pred.ID == n.self.ID || !Between(st.Pred.ID, n.self.ID, s.ID) {
				break
			}
			walked++
			// A successor's predecessor has called it recently: even if
			// we gave up on that peer, the state call below checks it
			// again directly (and revives it if it answers).
			b, err := n.ctl(ctx, st.Pred, methodState, nil)
			if err != nil {
				break
			}
			pst, err := decodeState(b)
			if err != nil {
				break
			}
			s, st = st.Pred, pst
		}
		n.mu.Lock()
		list := make([]Peer, 0, len(st.Successors)+2)
		if st.HasPred && st.Pred.ID != n.self.ID && Between(st.Pred.ID, n.self.ID, s.ID) && n.usable(st.Pred.ID) {
			list = append(list, st.Pred) // known, but did not answer the walk back
		}
		list = append(list, s)
		list = append(list, st.Successors...)
		if len(st.Successors) == 0 {
			// s is joining (a restarted peer others still list): keep
			// our own entries after it rather than shrink to [s].
			for _, p := range n.liveSuccessorsLocked() {
				if Distance(n.self.ID, p.ID).Compare(Distance(n.self.ID, s.ID)) > 0 {
					list = append(list, p)
				}
			}
		}
		succ := make([]Peer, 0, n.cfg.Successors)
		for _, p := range list {
			if p.ID == n.self.ID || len(succ) == n.cfg.Successors {
				break // wrapped around a small ring
			}
			if !n.usable(p.ID) || slices.ContainsFunc(succ, func(q Peer) bool { return q.ID == p.ID }) {
				continue
			}
			succ = append(succ, p)
		}
		if len(succ) == 0 {
			n.mu.Unlock()
			continue // every candidate is unusable: try the next successor
		}
		n.setLocked(n.pred, n.hasPred, succ)
		n.joined = true
		first := succ[0]
		n.mu.Unlock()
		if walked == maxWalkBack && st.HasPred && st.Pred.ID != n.self.ID && Between(st.Pred.ID, n.self.ID, s.ID) {
			// Still more peers between us and s: our successor is far
			// off (a join answered by a peer with a stale view). A lookup
			// of our own ID from s takes O(log N) hops where walking back
			// takes N/maxWalkBack rounds.
			n.mergeFrom(ctx, []Peer{s})
			n.mu.Lock()
			if len(n.succ) > 0 {
				first = n.succ[0]
			}
			n.mu.Unlock()
		}
		n.ctl(ctx, first, methodNotify, notifyMsg{Addr: n.self.Addr}.encode())
		return
	}
}

// maxWalkBack bounds the peers one stabilize round steps back over.
const maxWalkBack = 8

// keepAliveSuccessors is how many successors keepAlive watches. Deeper
// entries are watched by the peers before them, and their death reaches
// this node's list through stabilization, one hop per round.
const keepAliveSuccessors = 3

// keepAlive pings the predecessor and first successors not heard from
// within PingPeriod; the failure detector does the rest.
func (n *Node) keepAlive(ctx context.Context) {
	now := time.Now()
	n.fd.gc(now, 10*n.cfg.PingPeriod+n.cfg.DeadMemory)
	n.mu.Lock()
	targets := slices.Clone(n.succ[:min(keepAliveSuccessors, len(n.succ))])
	if n.hasPred && !slices.Contains(targets, n.pred) {
		targets = append(targets, n.pred)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range targets {
		if _, _, last := n.fd.stateOf(p.ID); now.Sub(last) < n.cfg.PingPeriod {
			continue
		}
		wg.Go(func() { n.ctl(ctx, p, methodPing, nil) })
	}
	wg.Wait()
}

// fixFingers refreshes the next finger that needs a lookup. Fingers that
// fall within the successor list are filled from it without a call; a
// looked-up finger also fills the following fingers it covers.
func (n *Node) fixFingers(ctx context.Context) {
	for range len(n.fingers) {
		n.mu.Lock()
		i := n.nextFinger
		start := n.self.ID.AddPow2(i)
		live := n.liveSuccessorsLocked()
		prev, local, found := n.self.ID, Peer{}, false
		for _, s := range live {
			if BetweenRight(start, prev, s.ID) {
				local, found = s, true
				break
			}
			prev = s.ID
		}
		if !found && len(live) < n.cfg.Successors && len(live) == len(n.succ) && n.joined {
			// the successor list holds the whole ring: the finger is ourselves
			n.hasFinger[i] = false
			n.nextFinger = (i + 1) % len(n.fingers)
			n.mu.Unlock()
			continue
		}
		if found {
			n.fingers[i], n.hasFinger[i] = local, true
			n.nextFinger = (i + 1) % len(n.fingers)
			n.mu.Unlock()
			continue
		}
		n.mu.Unlock()
		peers, _, err := n.Lookup(ctx, start, 1)
		n.mu.Lock()
		defer n.mu.Unlock()
		if err != nil || len(peers) == 0 || peers[0].ID == n.self.ID {
			n.hasFinger[i] = false
			n.nextFinger = (i + 1) % len(n.fingers)
			return
		}
		p := peers[0]
		j := i
		for j < len(n.fingers) && BetweenRight(n.self.ID.AddPow2(j), n.self.ID, p.ID) {
			n.fingers[j], n.hasFinger[j] = p, true
			j++
		}
		if j == i {
			j++
		}
		n.nextFinger = j % len(n.fingers)
		return
	}
}

// merge looks the node's own ID up through the bootstrap peers and a
// random finger, and from one remembered dead peer due for a retry. A
// closer successor than the current one means the ring was split (by a
// partition, or joins through different peers): adopting it merges the
// rings, and stabilization does the rest.
func (n *Node) merge(ctx context.Context) {
	starts := n.bootstrapPeers()
	n.mu.Lock()
	var fingers []Peer
	for i := range n.fingers {
		if n.hasFinger[i] && n.usable(n.fingers[i].ID) && !slices.Contains(fingers, n.fingers[i]) {
			fingers = append(fingers, n.fingers[i])
		}
	}
	n.mu.Unlock()
	n.rmu.Lock()
	n.rng.Shuffle(len(fingers), func(i, j int) { fingers[i], fingers[j] = fingers[j], fingers[i] })
	n.rmu.Unlock()
	starts = append(starts, fingers[:min(len(fingers), mergeFingers)]...)
	// Each start is looked up from on its own: a ring grown from
	// concurrent joins can settle in interleaved loops, and only a route
	// that runs through the other loop finds the closer successor; one
	// lookup from all starts at once tends to stay in one loop.
	for _, s := range starts {
		if ctx.Err() != nil {
			return
		}
		n.mergeFrom(ctx, []Peer{s})
	}
	if p, ok := n.dueLost(time.Now()); ok {
		n.mergeFrom(ctx, []Peer{p})
	}
}

// mergeFingers is how many random fingers a merge round looks up from,
// beside the bootstrap peers.
const mergeFingers = 3

// mergeFrom looks the node's own ID up from starts and adopts a closer
// successor than its own.
func (n *Node) mergeFrom(ctx context.Context, starts []Peer) {
	peers, _, err := iterate(ctx, n, n.self.ID, 2, n.cfg.Alpha, starts)
	if err != nil {
		return
	}
	for _, p := range peers {
		if p.ID == n.self.ID {
			continue
		}
		n.mu.Lock()
		better := len(n.succ) == 0 || Between(p.ID, n.self.ID, n.succ[0].ID)
		n.mu.Unlock()
		if !better {
			return
		}
		// A peer that just left is still in others' tables, sits right
		// where our successor was, and may still answer for a moment:
		// the detector knows (markLeft), the ping alone does not.
		if _, err := n.ctl(ctx, p, methodPing, nil); err != nil || !n.usable(p.ID) {
			return
		}
		n.mu.Lock()
		if len(n.succ) == 0 || Between(p.ID, n.self.ID, n.succ[0].ID) {
			n.log.Info("merging with a split ring", "successor", p)
			n.setLocked(n.pred, n.hasPred, append([]Peer{p}, n.succ...))
		}
		n.mu.Unlock()
		return
	}
}

// Lookup returns the first n distinct live peers clockwise from key (the
// replica or placement set: shard i goes to the i-th), fewer if the ring
// is smaller, and how the lookup went. It asks iteratively, starting from
// the closest peers this node knows.
func (n *Node) Lookup(ctx context.Context, key ID, count int) ([]Peer, LookupStats, error) {
	if count < 1 || count > maxLookupN {
		return nil, LookupStats{}, fmt.Errorf("dht: lookup: n = %d, want 1..%d", count, maxLookupN)
	}
	local := n.answer(key, count)
	n.mu.Lock()
	joining := !n.readyLocked()
	n.mu.Unlock()
	if joining {
		local = findResp{} // alone only until the join succeeds: ask the ring
	}
	if local.Done {
		var st LookupStats
		peers, st, err := extend(ctx, n, local.Peers, count, &st)
		return peers, st, err
	}
	starts := local.Peers
	if len(starts) == 0 {
		n.mu.Lock()
		starts = n.contacts()
		n.mu.Unlock()
	}
	peers, st, err := iterate(ctx, n, key, count, n.cfg.Alpha, starts)
	if err != nil {
		return nil, st, fmt.Errorf("dht: lookup %s: %w", key.Short(), err)
	}
	return peers, st, nil
}

func (n *Node) find(ctx context.Context, to Peer, key ID, count int) (findResp, error) {
	if to.ID == n.self.ID {
		n.mu.Lock()
		alone := len(n.succ) == 0 || !n.readyLocked()
		n.mu.Unlock()
		if alone {
			// Others still list our previous run: our own answer would
			// be "just me", which a (re)join cannot use.
			return findResp{}, errors.New("dht: lookup reached this node, which has no successors yet")
		}
		return n.answer(key, count), nil
	}
	b, err := n.ctl(ctx, to, methodFind, findReq{Key: key, N: count}.encode())
	if err != nil {
		return findResp{}, err
	}
	return decodeFindResp(b)
}

func (n *Node) hedge(to Peer) time.Duration { return n.fd.timeout(to.ID) }

// answer is this node's step of a lookup: key's successors if it knows
// them, else the known peers that most closely precede key.
func (n *Node) answer(key ID, count int) findResp {
	n.mu.Lock()
	defer n.mu.Unlock()
	live := n.liveSuccessorsLocked()
	withSelf := func() findResp {
		return findResp{Done: true, Peers: append([]Peer{n.self}, live[:min(count-1, len(live))]...)}
	}
	switch {
	case key == n.self.ID:
		return withSelf()
	case n.hasPred && n.usable(n.pred.ID) && BetweenRight(key, n.pred.ID, n.self.ID):
		return withSelf()
	case len(n.succ) == 0 && !n.hasPred:
		return withSelf() // alone
	}
	prev := n.self.ID
	for i, s := range live {
		if BetweenRight(key, prev, s.ID) {
			peers := slices.Clone(live[i:min(i+count, len(live))])
			if len(peers) < count && n.joined && len(n.succ) < n.cfg.Successors {
				// A successor list shorter than configured holds the whole
				// ring: the answer wraps around it (and this node) without
				// asking anyone, as a small ring's lookups mostly must.
				for _, p := range append([]Peer{n.self}, live[:i]...) {
					if len(peers) == count {
						break
					}
					peers = append(peers, p)
				}
			}
			return findResp{Done: true, Peers: peers}
		}
		prev = s.ID
	}
	return findResp{Peers: n.closestPrecedingLocked(key, n.cfg.Alpha+1)}
}

// closestPrecedingLocked returns up to k usable known peers in (self,
// key), closest to key first.
func (n *Node) closestPrecedingLocked(key ID, k int) []Peer {
	var ps []Peer
	consider := func(p Peer) {
		if Between(p.ID, n.self.ID, key) && n.usable(p.ID) && !slices.ContainsFunc(ps, func(q Peer) bool { return q.ID == p.ID }) {
			ps = append(ps, p)
		}
	}
	for _, p := range n.succ {
		consider(p)
	}
	for i := range n.fingers {
		if n.hasFinger[i] {
			consider(n.fingers[i])
		}
	}
	if n.hasPred {
		consider(n.pred)
	}
	slices.SortFunc(ps, func(a, b Peer) int { return Distance(a.ID, key).Compare(Distance(b.ID, key)) })
	return ps[:min(k, len(ps))]
}

func (n *Node) handleState(context.Context, *Request) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return stateMsg{HasPred: n.hasPred, Pred: n.pred, Successors: n.liveSuccessorsLocked()}.encode(), nil
}

func (n *Node) handleFind(_ context.Context, req *Request) ([]byte, error) {
	m, err := decodeFindReq(req.Body)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	ready := n.readyLocked()
	n.mu.Unlock()
	if !ready {
		return nil, errJoining
	}
	return n.answer(m.Key, m.N).encode(), nil
}

func (n *Node) handleNotify(_ context.Context, req *Request) ([]byte, error) {
	m, err := decodeNotify(req.Body)
	if err != nil {
		return nil, err
	}
	if req.From.IsZero() || req.From == n.self.ID {
		return nil, nil
	}
	p := Peer{ID: req.From, Addr: m.Addr}
	n.mu.Lock()
	defer n.mu.Unlock()
	pred, hasPred := n.pred, n.hasPred
	if !hasPred || !n.usable(pred.ID) || Between(p.ID, pred.ID, n.self.ID) || pred.ID == p.ID {
		pred, hasPred = p, true
	}
	succ := n.succ
	if len(n.liveSuccessorsLocked()) == 0 {
		if n.readyLocked() {
			succ = []Peer{p} // the second node of a ring
		} else {
			select { // joining: join through p now (see stabilizeLoop)
			case n.joinNow <- struct{}{}:
			default:
			}
		}
	}
	n.setLocked(pred, hasPred, succ)
	return nil, nil
}

func (n *Node) handleLeave(_ context.Context, req *Request) ([]byte, error) {
	m, err := decodeState(req.Body)
	if err != nil {
		return nil, err
	}
	gone := req.From
	if gone.IsZero() || gone == n.self.ID {
		return nil, nil
	}
	n.log.Info("peer left", "peer", gone.Short())
	n.fd.markLeft(gone, time.Now())
	n.mu.Lock()
	defer n.mu.Unlock()
	pred, hasPred := n.pred, n.hasPred
	if hasPred && pred.ID == gone {
		hasPred = false
		if m.HasPred && m.Pred.ID != n.self.ID && m.Pred.ID != gone {
			pred, hasPred = m.Pred, true
		}
	}
	wasSucc := slices.ContainsFunc(n.succ, func(p Peer) bool { return p.ID == gone })
	succ := slices.DeleteFunc(slices.Clone(n.succ), func(p Peer) bool { return p.ID == gone })
	if wasSucc {
		for _, p := range m.Successors {
			if p.ID != n.self.ID && p.ID != gone && !slices.ContainsFunc(succ, func(q Peer) bool { return q.ID == p.ID }) {
				succ = append(succ, p)
			}
		}
		slices.SortFunc(succ, func(a, b Peer) int { return Distance(n.self.ID, a.ID).Compare(Distance(n.self.ID, b.ID)) })
	}
	for i := range n.fingers {
		if n.hasFinger[i] && n.fingers[i].ID == gone {
			n.hasFinger[i] = false
		}
	}
	n.setLocked(pred, hasPred, succ)
	return nil, nil
}
