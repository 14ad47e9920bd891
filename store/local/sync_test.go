package local

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/voicering/voicering/store"
)

func TestRecordDurability(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	soon := store.Entry{Name: "b", Expires: now.Add(time.Hour)}
	late := store.Entry{Name: "m", Expires: now.Add(48 * time.Hour)}
	never := store.Entry{Name: "n"}
	tomb := store.Entry{Name: "t", Deleted: true, Expires: now.Add(30 * 24 * time.Hour)}
	tests := []struct {
		name    string
		batch   []store.Entry
		horizon time.Duration
		want    durability
	}{
		{"binding", []store.Entry{soon}, 24 * time.Hour, unsynced},
		{"bindings at the horizon", []store.Entry{soon, {Name: "c", Expires: now.Add(24 * time.Hour)}}, 24 * time.Hour, unsynced},
		{"one entry past the horizon", []store.Entry{soon, late}, 24 * time.Hour, synced},
		{"unexpiring entry", []store.Entry{soon, never}, 24 * time.Hour, synced},
		{"long-lived tombstone", []store.Entry{tomb}, 24 * time.Hour, synced},
		{"negative horizon syncs all", []store.Entry{soon}, -1, synced},
		{"empty batch", nil, 24 * time.Hour, synced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := recordDurability(tt.batch, now, tt.horizon); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLogFile(t *testing.T) {
	tests := []struct {
		name string
		kind string
		id   uint64
		ok   bool
	}{
		{"00012.mem", ".mem", 12, true},
		{"000003.vlog", ".vlog", 3, true},
		{"000004.sst", "", 0, false},
		{"MANIFEST", "", 0, false},
		{"x.mem", ".mem", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, id, ok := logFile(tt.name)
			if ok != tt.ok || ok && (kind != tt.kind || id != tt.id) {
				t.Errorf("got %q %d %v, want %q %d %v", kind, id, ok, tt.kind, tt.id, tt.ok)
			}
		})
	}
}

// TestSyncerFrom checks which logs a sync covers: after one sync, only
// the newest log of each kind and those created since.
func TestSyncerFrom(t *testing.T) {
	dir := t.TempDir()
	touch := func(names ...string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	touch("00001.mem", "00002.mem", "000001.vlog", "000001.sst")
	y := newSyncer(dir)
	if err := y.sync(); err != nil {
		t.Fatal(err)
	}
	if got, want := y.from, map[string]uint64{".mem": 2, ".vlog": 1}; !equalMaps(got, want) {
		t.Fatalf("after the first sync: from %v, want %v", got, want)
	}
	touch("00003.mem", "000002.vlog")
	os.Remove(filepath.Join(dir, "00002.mem")) // flushed
	if err := y.sync(); err != nil {
		t.Fatal(err)
	}
	if got, want := y.from, map[string]uint64{".mem": 3, ".vlog": 2}; !equalMaps(got, want) {
		t.Fatalf("after the second sync: from %v, want %v", got, want)
	}
	if got := y.begun.Load(); got != 2 {
		t.Errorf("sequential calls began %d syncs, want 2", got)
	}
}

func equalMaps(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSyncerShares checks that concurrent callers share syncs: never more
// syncs than callers, each caller served, no data race.
func TestSyncerShares(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "00001.mem"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := newSyncer(dir)
	const callers = 32
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { errs[i] = y.sync() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if n := y.begun.Load(); n < 1 || n > callers {
		t.Errorf("%d callers began %d syncs, want 1..%d", callers, n, callers)
	}
	t.Logf("%d concurrent callers, %d syncs", callers, y.begun.Load())
}

// TestSyncedWritesSync checks which writes of a store sync: shards and
// lasting records do, soft records do not, and NoSync never does.
func TestSyncedWritesSync(t *testing.T) {
	soon := store.Entry{Name: "b", Value: []byte("v"), Version: 1, Expires: time.Now().Add(time.Hour)}
	lasting := store.Entry{Name: "m", Value: []byte("v"), Version: 1}
	tests := []struct {
		name  string
		cfg   Config
		entry store.Entry
		syncs bool
	}{
		{"soft record", Config{}, soon, false},
		{"lasting record", Config{}, lasting, true},
		{"soft record, every write synced", Config{SoftExpiry: -1}, soon, true},
		{"lasting record, NoSync", Config{NoSync: true}, lasting, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.TempDir(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			before := s.syncer.begun.Load()
			if _, err := s.MergeRecord(t.Context(), store.Key{1}, []store.Entry{tt.entry}); err != nil {
				t.Fatal(err)
			}
			if got := s.syncer.begun.Load() > before; got != tt.syncs {
				t.Errorf("synced %v, want %v", got, tt.syncs)
			}
			got, err := s.GetRecord(t.Context(), store.Key{1})
			if err != nil || len(got) != 1 || !got[0].Equal(tt.entry) {
				t.Errorf("read back %+v, %v; want the entry written", got, err)
			}
		})
	}
}
