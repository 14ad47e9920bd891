// Package ringpeer assembles one whole voicering peer: the storage peer
// (ring node, store, records, objects) and, when asked, the SIP server
// that keeps its state in that peer's records. `voicering node`, `voicering
// demo` and the end-to-end tests all build peers here.
package ringpeer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/store/peer"
)

// Config configures a Peer.
type Config struct {
	// Peer configures the storage peer. Required (see peer.Config).
	Peer peer.Config
	// SIP, when set, turns SIP on; its Records are the peer's (any set
	// here are replaced). Nil: no SIP.
	SIP *sipvm.Config
}

// Peer is a storage peer with, optionally, its SIP server.
type Peer struct {
	*peer.Peer
	// SIP is the peer's SIP server, nil when SIP is off.
	SIP *sipvm.Server
}

// New builds the storage peer and binds the SIP sockets. Errors name what
// failed (a data directory in use, a SIP port taken).
func New(cfg Config) (*Peer, error) {
	p, err := peer.New(cfg.Peer)
	if err != nil {
		return nil, err
	}
	rp := &Peer{Peer: p}
	if cfg.SIP != nil {
		sc := *cfg.SIP
		sc.Records = p.Records()
		if sc.Logger == nil && cfg.Peer.Logger != nil {
			sc.Logger = cfg.Peer.Logger.With("part", "sip")
		}
		if rp.SIP, err = sipvm.New(sc); err != nil {
			p.Close()
			return nil, fmt.Errorf("peer: SIP: %w", err)
		}
	}
	return rp, nil
}

// Run runs the storage peer and the SIP server until ctx ends, or until
// either fails (the other is then stopped) and returns its error.
func (p *Peer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		errs[0] = p.Peer.Run(ctx)
		cancel()
	})
	if p.SIP != nil {
		wg.Go(func() {
			errs[1] = p.SIP.Serve(ctx)
			cancel()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close releases the SIP sockets and the storage peer. Call it after Run
// has returned.
func (p *Peer) Close() error {
	if p.SIP != nil {
		p.SIP.Close()
	}
	return p.Peer.Close()
}
