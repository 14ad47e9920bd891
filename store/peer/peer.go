// Package peer assembles one whole storage peer — its identity, its ring
// node, its badger store served to the other peers, and the ring-wide
// records and objects with their maintenance — and a Client that uses a
// ring without joining it. The CLI, the demo, the benchmark and the
// end-to-end tests all build peers here, so there is one way to make one.
package peer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store/local"
	"github.com/voicering/voicering/store/remote"
	"github.com/voicering/voicering/store/ring"
)

// Config configures a Peer.
type Config struct {
	// Dir is the peer's data directory: its identity key and certificate,
	// and its store under Dir/store. Created if missing. Required.
	Dir string
	// Listen is the address the ring transport listens on, e.g.
	// "127.0.0.1:7946" or ":0". Required unless Transport is set.
	Listen string
	// Advertise is the address other peers reach this one at. Zero: the
	// listener's address.
	Advertise string
	// Bootstrap lists addresses of ring peers to join through. Empty: the
	// peer starts a new ring (or waits to be joined).
	Bootstrap []string
	// CA closes the ring: only peers and clients with a certificate issued
	// by it are admitted. The peer's own certificate is read from
	// Dir/peer.crt (see dht.Identity). Nil: an open ring.
	CA *x509.Certificate
	// Transport replaces the TLS transport (e.g. the in-memory network of
	// a simulation). Listen, Advertise and CA are then unused.
	Transport dht.Transport
	// Node is the ring's settings (periods, timeouts, successor list);
	// Transport, Bootstrap and Logger are set by the peer, PeerCache
	// (zero) to Dir/peers.cache. Zero: dht's defaults.
	Node dht.Config
	// Store tunes the local badger store. Zero: local's defaults.
	Store local.Config
	// Replicas is R for records. Zero: 3.
	Replicas int
	// Maintain tunes hand-off and repair. Zero: ring's defaults.
	Maintain ring.MaintainConfig
	// AnswerDelay delays every answer of the peer's store by this much: a
	// deliberately slow peer, for the benchmark's long-tail case. Zero:
	// answer at once. Not for production. SetAnswerDelay changes it.
	AnswerDelay time.Duration
	// Logger receives the peer's events. Nil: discarded.
	Logger *slog.Logger
}

// Peer is one running member of a ring, holding shards and records for the
// others and answering their calls.
type Peer struct {
	cfg      Config
	identity *dht.Identity
	tr       dht.Transport
	node     *dht.Node
	store    *local.Store
	remotes  *remote.Pool // other peers' stores, merges batched per peer
	records  *ring.Records
	objects  *ring.Objects
	maintain *ring.Maintainer

	answerDelay *atomic.Int64 // nil unless Config.AnswerDelay was set

	started   time.Time
	closeOnce sync.Once
	closeErr  error
}

// SetAnswerDelay changes the delay of a peer started with an AnswerDelay
// (zero answers at once), so that a benchmark can compare a slow and a
// healthy ring in alternation, in the same processes. It reports false,
// changing nothing, on a peer started without one.
func (p *Peer) SetAnswerDelay(d time.Duration) bool {
	if p.answerDelay == nil {
		return false
	}
	p.answerDelay.Store(int64(d))
	return true
}

// New opens the peer's identity and store and builds its node; Run starts
// it. Errors name the file or address at fault: a data directory held by
// another running peer, a corrupt key, an address in use.
func New(cfg Config) (*Peer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("peer: no data directory (--data)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("peer: data directory: %w", err)
	}
	p := &Peer{cfg: cfg, started: time.Now()}
	var err error
	if p.identity, err = dht.LoadIdentity(cfg.Dir); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	scfg := cfg.Store
	if scfg.Logger == nil {
		scfg.Logger = cfg.Logger.With("part", "store")
	}
	if p.store, err = local.Open(filepath.Join(cfg.Dir, "store"), scfg); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	p.tr = cfg.Transport
	if p.tr == nil {
		if cfg.Listen == "" {
			p.store.Close()
			return nil, errors.New("peer: no listen address (--listen)")
		}
		t, err := dht.NewTLSTransport(dht.TLSConfig{
			Identity: p.identity, Addr: cfg.Listen, AdvertiseAddr: cfg.Advertise,
			CA: cfg.CA, Logger: cfg.Logger.With("part", "transport"),
		})
		if err != nil {
			p.store.Close()
			return nil, fmt.Errorf("peer: %w", err)
		}
		p.tr = t
	}
	ncfg := cfg.Node
	ncfg.Transport, ncfg.Bootstrap, ncfg.Logger = p.tr, cfg.Bootstrap, cfg.Logger.With("part", "ring")
	if ncfg.PeerCache == "" {
		ncfg.PeerCache = filepath.Join(cfg.Dir, "peers.cache") // rejoin through peers known last run
	}
	if p.node, err = dht.New(ncfg); err != nil {
		p.store.Close()
		closeTransport(p.tr)
		return nil, fmt.Errorf("peer: %w", err)
	}
	p.remotes = remote.NewPool(p.node)
	if cfg.AnswerDelay > 0 {
		p.answerDelay = new(atomic.Int64)
		p.answerDelay.Store(int64(cfg.AnswerDelay))
		remote.Register(delayed{p.node, p.answerDelay}, p.store)
	} else {
		remote.Register(p.node, p.store)
	}
	p.node.Handle(methodStatus, p.handleStatus)
	dial := p.Dial
	if p.records, err = ring.NewRecords(ring.RecordsConfig{
		Locator: p.node, Dial: dial, Replicas: cfg.Replicas, Writer: p.node.Self().ID,
		Logger: cfg.Logger.With("part", "records"),
	}); err != nil {
		p.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	if p.objects, err = ring.NewObjects(ring.ObjectsConfig{
		Locator: p.node, Dial: dial, Records: p.records, Logger: cfg.Logger.With("part", "objects"),
	}); err != nil {
		p.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	mcfg := cfg.Maintain
	mcfg.Self, mcfg.Local, mcfg.Locator, mcfg.Dial = p.node.Self(), p.store, p.node, dial
	mcfg.Records, mcfg.Neighbours = p.records, p.node
	if mcfg.Logger == nil {
		mcfg.Logger = cfg.Logger.With("part", "maintain")
	}
	if p.maintain, err = ring.NewMaintainer(mcfg); err != nil {
		p.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	return p, nil
}

// Dial returns the store of p: this peer's own store when p is itself, else
// the remote store reached through the ring transport.
func (p *Peer) Dial(q dht.Peer) ring.Backend {
	if q.ID == p.node.Self().ID {
		return p.store
	}
	return p.remotes.Store(q)
}

// Run runs the peer until ctx ends, then leaves the ring gracefully (its
// neighbours splice it out at once) and returns. It returns early with an
// error if a part fails.
func (p *Peer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	run := func(i int, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errs[i] = err
				cancel(err)
			}
		})
	}
	run(0, p.node.Run)
	run(1, p.store.Run)
	run(2, p.maintain.Run)
	<-ctx.Done()
	wg.Wait()
	return errors.Join(errs...)
}

// Leave hands the peer's records and shards over to the peers that will
// hold its place once it is gone (see ring.Maintainer.HandOver), as far as
// ctx allows, then tells the neighbours it is going, so they splice it out
// at once rather than waiting to find it dead. Leave closes the node: call
// it before cancelling Run, and Close afterwards.
func (p *Peer) Leave(ctx context.Context) error {
	recs, shards, herr := p.maintain.HandOver(ctx)
	p.cfg.Logger.Info("handed over before leaving", "records", recs, "shards", shards, "err", herr)
	lctx := ctx
	if ctx.Err() != nil { // the hand-over used the time up: still say goodbye
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
	}
	return errors.Join(herr, p.node.Leave(lctx))
}

// Close releases the node, its transport and the store. Call it after Run
// has returned.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.node != nil {
			errs = append(errs, p.node.Close())
		}
		errs = append(errs, p.store.Close())
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

func closeTransport(t dht.Transport) {
	if c, ok := t.(interface{ Close() error }); ok {
		c.Close()
	}
}

// Self returns the peer's node ID and address.
func (p *Peer) Self() dht.Peer { return p.node.Self() }

// Node returns the peer's ring node.
func (p *Peer) Node() *dht.Node { return p.node }

// Records returns the ring-wide records, written and read through this
// peer.
func (p *Peer) Records() *ring.Records { return p.records }

// Objects returns the ring-wide objects, put and got through this peer.
func (p *Peer) Objects() *ring.Objects { return p.objects }

// Store returns the peer's local store.
func (p *Peer) Store() *local.Store { return p.store }

// Maintainer returns the peer's hand-off and repair loop.
func (p *Peer) Maintainer() *ring.Maintainer { return p.maintain }
