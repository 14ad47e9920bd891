package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicering/voicering/store"
)

// syncer makes the writes committed so far durable against power loss:
// badger runs without SyncWrites (which would fsync every commit, soft
// state included), and a write that must survive power loss calls sync
// after its transaction committed.
//
// A sync fsyncs badger's write-ahead logs (NNNNN.mem) and value-log files
// (NNNNNN.vlog) that are new since the last sync, and the directory when
// files appeared. Badger writes only to the newest file of each kind, so
// a write committed before a sync began is in a file at least as new as
// the newest file the previous sync saw: either that sync covered it, or
// this one does. A log gone since the listing was flushed into a table,
// which badger syncs itself.
//
// Concurrent callers share syncs (group commit): a caller is done when a
// sync that began after it called has succeeded, so N concurrent durable
// writes cost about two syncs, not N.
type syncer struct {
	dir string

	begun atomic.Uint64 // syncs begun

	mu      sync.Mutex // held through a sync
	lastOK  uint64     // number of the last sync that succeeded
	from    map[string]uint64
	maxSeen map[string]uint64
}

func newSyncer(dir string) *syncer {
	return &syncer{dir: dir, from: map[string]uint64{}, maxSeen: map[string]uint64{}}
}

// syncedKinds are the file suffixes badger appends writes to.
var syncedKinds = []string{".mem", ".vlog"}

// sync returns once every write committed before the call is on disk.
func (y *syncer) sync() error {
	want := y.begun.Load() + 1 // the first sync that begins after this line
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.lastOK >= want {
		return nil // shared a sync begun after the commit
	}
	n := y.begun.Add(1)
	if err := y.syncFiles(); err != nil {
		return fmt.Errorf("sync %s: %w", y.dir, err)
	}
	y.lastOK = n
	return nil
}

// syncFiles fsyncs the logs at least as new as the newest of each kind
// the last successful call saw. y.mu is held.
func (y *syncer) syncFiles() error {
	ents, err := os.ReadDir(y.dir)
	if err != nil {
		return err
	}
	newest := map[string]uint64{}
	newFiles := false
	for _, e := range ents {
		kind, id, ok := logFile(e.Name())
		if !ok || id < y.from[kind] {
			continue
		}
		newest[kind] = max(newest[kind], id)
		if id > y.maxSeen[kind] {
			newFiles = true
		}
		if err := fsync(filepath.Join(y.dir, e.Name())); err != nil {
			return err
		}
	}
	if newFiles {
		if err := fsync(y.dir); err != nil {
			return err
		}
	}
	for kind, id := range newest {
		y.from[kind], y.maxSeen[kind] = id, id
	}
	return nil
}

// logFile parses a badger log file name: "00012.mem" is (".mem", 12).
func logFile(name string) (kind string, id uint64, ok bool) {
	for _, k := range syncedKinds {
		if num, found := strings.CutSuffix(name, k); found {
			id, err := strconv.ParseUint(num, 10, 64)
			return k, id, err == nil
		}
	}
	return "", 0, false
}

// fsync syncs the file or directory at path; one removed since it was
// listed needs nothing.
func fsync(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// durability is how a write reaches the disk.
type durability int

const (
	synced   durability = iota // fsynced before the write returns
	unsynced                   // in badger's log (survives a crash of the process), not fsynced
)

// recordDurability returns how a merge of batch is written: unsynced when
// every entry expires within horizon of now (soft state such as SIP
// bindings, which their owners refresh and R replicas hold), synced
// otherwise or when horizon is negative.
func recordDurability(batch []store.Entry, now time.Time, horizon time.Duration) durability {
	if horizon < 0 || len(batch) == 0 {
		return synced
	}
	limit := now.Add(horizon)
	for _, e := range batch {
		if e.Expires.IsZero() || e.Expires.After(limit) {
			return synced
		}
	}
	return unsynced
}
