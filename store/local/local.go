// Package local is the store of one peer on its own disk, built on badger
// (github.com/dgraph-io/badger/v4). A *Store implements store.Shards and
// store.Records; see package store for the contract and its documentation
// for the design (key layout, durability, memory).
//
// A node opens its store with Open, runs Run in its errgroup until shutdown,
// then calls Close once Run has returned:
//
//	s, err := local.Open(dir, local.Config{Logger: log})
//	if err != nil { … }
//	g.Go(func() error { return s.Run(ctx) })
//	err = g.Wait()
//	s.Close()
//
// Only one process may open a directory at a time; a second gets an error
// wrapping ErrLocked that says another voicering node probably runs there.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/voicering/voicering/store"
)

// Errors Open returns besides I/O errors.
var (
	// ErrLocked: another process has the store directory open. It is
	// usually another voicering node running on the same directory.
	ErrLocked = errors.New("directory is locked by another process")

	// ErrFormat: the directory holds data in a layout this binary does not
	// read: written by a newer voicering, or not a voicering store at all.
	ErrFormat = errors.New("unsupported on-disk format")
)

// Config configures a Store. The zero value is a durable store with the
// defaults below.
type Config struct {
	// NoSync, when true, fsyncs no write: every acknowledged write still
	// survives the crash of the process (it is in badger's memory-mapped
	// log), but power loss or a kernel crash can lose the writes of the
	// last moments. The zero value, false, fsyncs every write before it
	// returns, except soft state (see SoftExpiry).
	NoSync bool

	// SoftExpiry marks soft state: a MergeRecord whose every entry
	// (tombstones included) expires within SoftExpiry of now is not
	// fsynced, only written to badger's log. It survives the crash of the
	// process like every acknowledged write, but not power loss: SIP
	// bindings, which phones refresh before they expire and R replicas
	// hold. Shards, shard deletions and records with a longer-lived or
	// unexpiring entry (manifests, mailboxes, accounts) are fsynced. Zero
	// means 24 hours; a negative SoftExpiry fsyncs every write.
	SoftExpiry time.Duration

	// Logger receives badger's warnings and errors and the store's own
	// maintenance messages (at debug level). Nil discards them.
	Logger *slog.Logger

	// GCInterval is how often Run collects value-log garbage: the space of
	// deleted, overwritten and expired values. Zero means 10 minutes; a
	// negative interval disables collection (Run then only waits).
	GCInterval time.Duration
}

const (
	defaultGCInterval = 10 * time.Minute
	defaultSoftExpiry = 24 * time.Hour

	// gcDiscardRatio: a value-log file is rewritten when at least this
	// share of it is garbage (badger's recommendation).
	gcDiscardRatio = 0.5

	// valueThreshold: values this long or longer go to the value log, the
	// rest stay in the LSM tree. It lies above the largest encoded record
	// entry (MaxValueSize + header), so records always stay in the LSM tree
	// and shards of tens of KiB and more go to the value log.
	valueThreshold = 20 << 10

	// maxConflictRetries bounds how often a write transaction is retried
	// after a conflict with a concurrent one.
	maxConflictRetries = 100
)

// badgerOptions returns the tuned badger options for dir (see the Memory
// section of the store package documentation). badger's defaults hold
// about 86 MiB of heap per open database; these hold about 10 MiB.
func badgerOptions(dir string, cfg Config, log badger.Logger) badger.Options {
	o := badger.DefaultOptions(dir)
	o.SyncWrites = false // the store fsyncs what must be durable itself (syncer)
	o.Logger = log
	o.MetricsEnabled = false // badger's metrics are process-wide expvars

	o.MemTableSize = 8 << 20 // the one memtable arena dominates the heap
	o.NumMemtables = 2
	o.NumLevelZeroTables = 2
	o.NumLevelZeroTablesStall = 8
	o.NumCompactors = 2
	o.BlockCacheSize = 0 // no block cache: tables are mmapped and the OS caches them
	o.IndexCacheSize = 0
	o.Compression = options.None // a block cache is required with compression; shards are ciphertext anyway
	o.ChecksumVerificationMode = options.OnBlockRead
	o.ValueThreshold = valueThreshold
	o.ValueLogFileSize = 64 << 20
	return o
}

// Store is the local store of one peer. Its methods are safe for concurrent
// use. Open it with Open, run its maintenance with Run, and Close it after
// Run has returned.
type Store struct {
	db         *badger.DB
	dir        string
	log        *slog.Logger
	gcInterval time.Duration
	running    atomic.Bool
	noSync     bool
	softExpiry time.Duration
	syncer     *syncer

	// Record merges waiting for a transaction, by durability class.
	softMerges, durableMerges *store.Coalescer
	mem                       memRecords // unused unless memoryRecords

	// mu is held shared by every operation and exclusively by Close, so
	// Close waits for operations in flight and none starts after it.
	mu     sync.RWMutex
	closed bool
}

var (
	_ store.Shards      = (*Store)(nil)
	_ store.Records     = (*Store)(nil)
	_ store.BatchMerger = (*Store)(nil)
)

// Open opens the store in dir, creating the directory and an empty store if
// needed. Only one process may have dir open: Open fails with an error
// wrapping ErrLocked otherwise. A directory written by a newer voicering, or
// holding some other badger database, fails with ErrFormat.
func Open(dir string, cfg Config) (*Store, error) {
	return open(dir, cfg, badgerOptions)
}

// open is Open with the badger options made by tune; tests compare tunings.
func open(dir string, cfg Config, tune func(dir string, cfg Config, log badger.Logger) badger.Options) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("store: open: %w: empty directory path", store.ErrInvalid)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("store", dir)
	s := &Store{dir: dir, log: log, gcInterval: cfg.GCInterval, noSync: cfg.NoSync, softExpiry: cfg.SoftExpiry, syncer: newSyncer(dir)}
	if s.gcInterval == 0 {
		s.gcInterval = defaultGCInterval
	}
	if s.softExpiry == 0 {
		s.softExpiry = defaultSoftExpiry
	}
	// One transaction of each class at a time: the merges that arrive
	// meanwhile make up the next, which shares its commit (and fsync).
	// Soft state also lingers for company under load; durable merges
	// wait for an fsync anyway, and the merges that come meanwhile
	// share it.
	s.softMerges = store.NewCoalescer(1, s.mergeCollapsed)
	s.softMerges.SetLinger(store.MergeLinger)
	s.durableMerges = store.NewCoalescer(1, s.mergeCollapsed)

	db, err := badger.Open(tune(dir, cfg, badgerLogger{log}))
	if err != nil {
		// badger flattens the flock error into text.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("store: open %s: %w; another voicering node probably runs on this directory: stop it or give this one another directory", dir, ErrLocked)
		}
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	s.db = db
	if err := s.checkFormat(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return s, nil
}

// checkFormat writes the format marker into an empty store and checks it in
// any other.
func (s *Store) checkFormat() error {
	var found bool
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			it.Rewind()
			if it.Valid() {
				return fmt.Errorf("%w: the directory holds a database without a voicering format marker; is it another program's?", ErrFormat)
			}
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error {
			version, err := decodeFormat(v)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrFormat, err)
			}
			if version != formatVersion {
				return fmt.Errorf("%w: the store is in format %d and this voicering reads format %d; run a voicering that reads it", ErrFormat, version, formatVersion)
			}
			return nil
		})
	})
	if err != nil || found {
		return err
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(formatKey, encodeFormat(formatVersion))
	}); err != nil {
		return err
	}
	return s.sync(synced)
}

// Run collects value-log garbage every Config.GCInterval, each time until
// badger reports nothing left to rewrite, and returns nil when ctx ends.
// Call it at most once at a time; it returns an error wrapping
// store.ErrClosed if the store is closed under it. Close the store only
// after Run has returned.
func (s *Store) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("store: run %s: already running", s.dir)
	}
	defer s.running.Store(false)
	if s.gcInterval < 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(s.gcInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := s.collectGarbage(ctx); err != nil {
				return fmt.Errorf("store: run %s: %w", s.dir, err)
			}
		}
	}
}

// collectGarbage runs value-log GC until badger has nothing to rewrite.
func (s *Store) collectGarbage(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	rewrites := 0
	for ctx.Err() == nil {
		err := s.db.RunValueLogGC(gcDiscardRatio)
		if err == nil {
			rewrites++
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.log.Warn("value-log garbage collection failed", "err", err)
		}
		break
	}
	s.log.Debug("value-log garbage collection done", "rewrites", rewrites)
	return nil
}

// Close waits for operations in flight, then closes the database. Call it
// after Run has returned. Closing twice returns nil; any other method
// returns an error wrapping store.ErrClosed after Close.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.dir, err)
	}
	return nil
}

// begin starts an operation: it fails if ctx is done or the store is
// closed, and otherwise holds the store open until end is called.
func (s *Store) begin(ctx context.Context) (end func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, store.ErrClosed
	}
	return s.mu.RUnlock, nil
}

// update runs fn in a read-write transaction, retrying it while it
// conflicts with a concurrent transaction, and makes it durable as d says.
// A synced update is synced even when fn wrote nothing: what it read may
// be a concurrent write not yet on disk.
func (s *Store) update(ctx context.Context, d durability, fn func(txn *badger.Txn) error) error {
	for range maxConflictRetries {
		err := s.db.Update(fn)
		if err == nil {
			return s.sync(d)
		}
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fmt.Errorf("gave up after %d conflicting concurrent writes; retry", maxConflictRetries)
}

// sync makes the writes committed so far survive power loss when d is
// synced and the store syncs at all.
func (s *Store) sync(d durability) error {
	if d != synced || s.noSync {
		return nil
	}
	return s.syncer.sync()
}

// badgerLogger passes badger's warnings and errors to slog and drops its
// informational and debug chatter.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(format string, args ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
