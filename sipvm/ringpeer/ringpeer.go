// Package ringpeer assembles one whole voicering peer: the storage peer
// (ring node, store, records, objects) and, when asked, the SIP server
// that keeps its state in that peer's records. `voicering node`, `voicering
// demo` and the end-to-end tests all build peers here.
package ringpeer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
		if sc.VM != nil {
			vc := *sc.VM
			vc.Objects = p.Objects()
			if vc.Key == nil {
				if vc.Key, err = VoicemailKey(cfg.Peer.Dir); err != nil {
					p.Close()
					return nil, err
				}
			}
			sc.VM = &vc
		}
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

// KeyFile is the file, in a peer's data directory, holding the ring's
// voicemail key (32 bytes, hex): every SIP peer of a ring needs the same
// one, copied there like the ring CA (`voicering demo` does it).
const KeyFile = "voicemail.key"

// VoicemailKey reads the voicemail key of the peer with data directory
// dir, creating a fresh one when there is none.
func VoicemailKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k := sipvm.NewMailboxKey()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("peer: voicemail key: %w", err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("peer: voicemail key: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peer: voicemail key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("peer: voicemail key %s: want 64 hex digits", path)
	}
	return k, nil
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
