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
	"runtime/debug"
	"strings"
	"sync"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/store/peer"
)

// Config configures a Peer.
type Config struct {
	// Peer configures the storage peer. Required (see peer.Config).
	Peer peer.Config
	// SIP, when set, turns SIP on; its Records are the peer's (any set
	// here are replaced), and so are its VM's Objects. A VM without a
	// Key gets VoicemailKey(Peer.Dir), this peer's own: give every SIP
	// peer of a ring the same key instead (ReadKey), and a VM without a
	// Spool the SpoolDir of Peer.Dir. Nil: no SIP.
	SIP *sipvm.Config
	// SIPRecords, when set, is given the peer's records and returns the
	// ones SIP uses. Benchmarks use it to take the ring's writes out of a
	// measurement (testdata/bench/ringnode -no-sip-writes); a node leaves
	// it nil.
	SIPRecords func(sipvm.Records) sipvm.Records
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
		if cfg.SIPRecords != nil {
			sc.Records = cfg.SIPRecords(sc.Records)
		}
		if sc.VM != nil {
			vc := *sc.VM
			vc.Objects = p.Objects()
			if vc.Spool == "" {
				vc.Spool = filepath.Join(cfg.Peer.Dir, SpoolDir)
			}
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
		if sc.VM != nil {
			p.Node().Handle(sipvm.MethodNotifyMailbox, rp.notifyMailbox)
		}
	}
	return rp, nil
}

// notifyMailbox answers sipvm.MethodNotifyMailbox.
func (rp *Peer) notifyMailbox(_ context.Context, req *dht.Request) ([]byte, error) {
	return nil, rp.SIP.NotifyMailbox(string(req.Body))
}

// SpoolDir is the directory, in a peer's data directory, where its SIP
// server spools voicemail deposits until the ring has stored them
// (sipvm.VoicemailConfig.Spool), when the Config names none.
const SpoolDir = "voicemail-spool"

// KeyFile is the file, in a peer's data directory, holding the voicemail
// key a SIP peer uses when it is given none (VoicemailKey). A ring's SIP
// peers must all hold the same key: create one with CreateKey (`voicering
// vm key init`) and give its file to every SIP peer (`voicering node
// --vm-key FILE`); `voicering demo` does it for its peers.
const KeyFile = "voicemail.key"

// ErrKeyExists marks a key file CreateKey would have overwritten.
var ErrKeyExists = errors.New("peer: voicemail key file exists")

// VoicemailKey reads the voicemail key of the peer with data directory
// dir (dir/KeyFile), creating a fresh one when there is none. A key made
// this way is this peer's alone: mailboxes written through other SIP
// peers, which made their own, cannot be opened here.
func VoicemailKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	k, err := ReadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("peer: voicemail key: %w", err)
		}
		k, err = CreateKey(path)
		if errors.Is(err, ErrKeyExists) { // another process made it first
			return ReadKey(path)
		}
	}
	return k, err
}

// CreateKey writes a fresh voicemail key to path (64 hex digits and a
// newline, mode 0600) and returns it. It never overwrites: an existing
// file gives an error wrapping ErrKeyExists. The file is written whole or
// not at all (a temporary file linked into place).
func CreateKey(path string) ([]byte, error) {
	k := sipvm.NewMailboxKey()
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return nil, fmt.Errorf("peer: create voicemail key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(k) + "\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("peer: create voicemail key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %s (it may be the key of a running ring: keep it, or remove it first to make another)", ErrKeyExists, path)
		}
		return nil, fmt.Errorf("peer: create voicemail key %s: %w", path, err)
	}
	return k, nil
}

// ReadKey reads a voicemail key file written by CreateKey. A missing
// file gives an error wrapping fs.ErrNotExist.
func ReadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("peer: voicemail key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("peer: voicemail key %s: want 64 hex digits (made by `voicering vm key init`)", path)
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

// GCPercent is the garbage collector's target (GOGC) a peer process runs
// with unless the GOGC environment variable sets one. A peer's live heap
// is small and nearly all it allocates is garbage within one request, so
// Go's default of 100 collects far more often than memory needs: on the
// REGISTER benchmark (4 peers, 3,200/s offered) 400 registered 3,115/s
// against 1,762–2,706/s with 100, for about 130 MB more resident memory
// per peer (BENCHMARKS.md).
const GCPercent = 400

// TuneGC sets the garbage collector's target to GCPercent unless GOGC is
// set in the environment. Commands that run peers call it once at start.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
