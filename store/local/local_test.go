package local

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"go.uber.org/goleak"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
	"github.com/voicering/voicering/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openTest opens a store in a fresh directory and closes it at cleanup.
func openTest(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	t.Run("Shards", func(t *testing.T) {
		storetest.TestShards(t, func(t *testing.T) store.Shards { return openTest(t, Config{}) })
	})
	t.Run("Records", func(t *testing.T) {
		storetest.TestRecords(t, func(t *testing.T) store.Records { return openTest(t, Config{}) })
	})
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx := t.Context()
	id := store.ShardID{Segment: 1, Shard: 2}
	data := []byte("shard data")
	if err := s.PutShard(ctx, id, coding.HashOf(data), data); err != nil {
		t.Fatalf("PutShard: %v", err)
	}
	e := store.Entry{Name: "n", Value: []byte("v"), Version: 3, Expires: time.Now().Add(time.Hour)}
	if _, err := s.MergeRecord(ctx, store.Key{1}, []store.Entry{e}); err != nil {
		t.Fatalf("MergeRecord: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openAt(t, dir)
	got, _, err := s.GetShard(ctx, id)
	if err != nil || string(got) != string(data) {
		t.Errorf("GetShard after reopen = %q, %v; want %q", got, err, data)
	}
	entries, err := s.GetRecord(ctx, store.Key{1})
	if err != nil || len(entries) != 1 || !entries[0].Equal(e) {
		t.Errorf("GetRecord after reopen = %+v, %v; want [%+v]", entries, err, e)
	}
}

func openAt(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Config{})
	if err != nil {
		t.Fatalf("Open %s: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) (open string)
		wantIs  error
		wantMsg string
	}{
		{
			name:    "empty path",
			wantIs:  store.ErrInvalid,
			wantMsg: "empty directory path",
		},
		{
			name: "locked by another open store",
			prepare: func(t *testing.T, dir string) string {
				openAt(t, dir)
				return dir
			},
			wantIs:  ErrLocked,
			wantMsg: "another voicering node probably runs on this directory",
		},
		{
			name: "newer format",
			prepare: func(t *testing.T, dir string) string {
				writeRaw(t, dir, formatKey, encodeFormat(formatVersion+1))
				return dir
			},
			wantIs:  ErrFormat,
			wantMsg: "the store is in format 2 and this voicering reads format 1",
		},
		{
			name: "garbled format marker",
			prepare: func(t *testing.T, dir string) string {
				writeRaw(t, dir, formatKey, []byte("what"))
				return dir
			},
			wantIs:  ErrFormat,
			wantMsg: "format marker",
		},
		{
			name: "another program's database",
			prepare: func(t *testing.T, dir string) string {
				writeRaw(t, dir, []byte("some/key"), []byte("value"))
				return dir
			},
			wantIs:  ErrFormat,
			wantMsg: "without a voicering format marker",
		},
		{
			name: "a file, not a directory",
			prepare: func(t *testing.T, dir string) string {
				file := filepath.Join(dir, "file")
				if err := os.WriteFile(file, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return file
			},
			wantMsg: "store: open",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := ""
			if tt.prepare != nil {
				dir = tt.prepare(t, t.TempDir())
			}
			s, err := Open(dir, Config{})
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Open: got %v, want an error wrapping %q", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Open: got %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

// writeRaw writes one key straight into a badger database in dir.
func writeRaw(t *testing.T, dir string, key, value []byte) {
	t.Helper()
	db, err := badger.Open(badgerOptions(dir, Config{}, badgerLogger{slog.New(slog.DiscardHandler)}))
	if err != nil {
		t.Fatalf("badger.Open: %v", err)
	}
	defer db.Close()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, value) }); err != nil {
		t.Fatalf("write %q: %v", key, err)
	}
}

// TestCorruptShard damages a stored shard under the store's feet and checks
// that reading it reports ErrCorrupt and that deleting and putting it again
// repairs it.
func TestCorruptShard(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(txn *badger.Txn, id store.ShardID) error
		wantMsg string
	}{
		{"flipped byte", func(txn *badger.Txn, id store.ShardID) error {
			return txn.Set(shardDataKey(id), []byte("Shard data that is long enough"))
		}, "stored bytes hash to"},
		{"truncated", func(txn *badger.Txn, id store.ShardID) error {
			return txn.Set(shardDataKey(id), []byte("shard"))
		}, "5 bytes stored, want 30"},
		{"data missing", func(txn *badger.Txn, id store.ShardID) error {
			return txn.Delete(shardDataKey(id))
		}, "the shard's data is missing"},
		{"meta garbled", func(txn *badger.Txn, id store.ShardID) error {
			return txn.Set(shardMetaKey(id), []byte("short"))
		}, "shard meta of 5 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, Config{})
			ctx := t.Context()
			id := store.ShardID{Segment: 9}
			data := []byte("shard data that is long enough")
			h := coding.HashOf(data)
			if err := s.PutShard(ctx, id, h, data); err != nil {
				t.Fatalf("PutShard: %v", err)
			}
			if err := s.db.Update(func(txn *badger.Txn) error { return tt.damage(txn, id) }); err != nil {
				t.Fatalf("damage: %v", err)
			}
			_, _, err := s.GetShard(ctx, id)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("GetShard of a damaged shard: got %v, want an error wrapping ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("GetShard: got %q, want it to contain %q", err, tt.wantMsg)
			}
			if err := s.DeleteShard(ctx, id); err != nil {
				t.Fatalf("DeleteShard: %v", err)
			}
			if err := s.PutShard(ctx, id, h, data); err != nil {
				t.Fatalf("PutShard after delete: %v", err)
			}
			if got, _, err := s.GetShard(ctx, id); err != nil || string(got) != string(data) {
				t.Fatalf("GetShard after repair = %q, %v; want %q", got, err, data)
			}
		})
	}
}

func TestCorruptEntry(t *testing.T) {
	s := openTest(t, Config{})
	key := store.Key{7}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(entryKey(key, "n"), []byte{0x80})
	}); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetRecord(t.Context(), key)
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("GetRecord of a damaged entry: got %v, want an error wrapping ErrCorrupt", err)
	}
	_, err = s.MergeRecord(t.Context(), key, []store.Entry{{Name: "n", Version: 1}})
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("MergeRecord over a damaged entry: got %v, want an error wrapping ErrCorrupt", err)
	}
}

// A damaged entry fails only the merge that touches it when merges share
// a transaction (MergeRecords): the others of the batch are stored.
func TestCorruptEntryInABatch(t *testing.T) {
	s := openTest(t, Config{})
	bad, good := store.Key{7}, store.Key{8}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(entryKey(bad, "n"), []byte{0x80})
	}); err != nil {
		t.Fatal(err)
	}
	e := store.Entry{Name: "n", Value: []byte("v"), Version: 1}
	rs := s.MergeRecords(t.Context(), []store.RecordMerge{{Key: bad, Entries: []store.Entry{e}}, {Key: good, Entries: []store.Entry{e}}})
	if !errors.Is(rs[0].Err, store.ErrCorrupt) {
		t.Errorf("merge over the damaged entry: %v, want ErrCorrupt", rs[0].Err)
	}
	if rs[1].Err != nil || rs[1].Written != 1 {
		t.Errorf("the other merge of the batch: wrote %d, %v; want 1, nil", rs[1].Written, rs[1].Err)
	}
	if got, err := s.GetRecord(t.Context(), good); err != nil || len(got) != 1 {
		t.Errorf("record of the other merge: %v, %v", got, err)
	}
}

func TestMessages(t *testing.T) {
	s := openTest(t, Config{})
	ctx := t.Context()
	id := store.ShardID{Segment: 4, Shard: 2}
	id.Index[0], id.Index[1] = 0x3f, 0x2a
	err := s.PutShard(ctx, id, coding.Hash{}, []byte("x"))
	want := "store: put shard 3f2a000000000000…/seg 4/shard 2: hash mismatch: data hashes to 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881, want 0000000000000000000000000000000000000000000000000000000000000000"
	if err == nil || err.Error() != want {
		t.Errorf("PutShard with a wrong hash:\ngot  %v\nwant %s", err, want)
	}
	_, _, err = s.GetShard(ctx, id)
	if want := "store: get shard 3f2a000000000000…/seg 4/shard 2: not found"; err == nil || err.Error() != want {
		t.Errorf("GetShard of an absent shard:\ngot  %v\nwant %s", err, want)
	}
	_, err = s.MergeRecord(ctx, store.Key{0xab}, []store.Entry{{Name: "ok"}, {Value: []byte("v")}})
	if want := "store: merge record ab00000000000000…: entry 1: invalid: empty entry name"; err == nil || err.Error() != want {
		t.Errorf("MergeRecord with an empty name:\ngot  %v\nwant %s", err, want)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := t.Context()
	checks := map[string]error{
		"PutShard":    s.PutShard(ctx, store.ShardID{}, coding.HashOf(nil), nil),
		"DeleteShard": s.DeleteShard(ctx, store.ShardID{}),
		"Run":         s.collectGarbage(ctx),
	}
	_, _, checks["GetShard"] = s.GetShard(ctx, store.ShardID{})
	_, checks["MergeRecord"] = s.MergeRecord(ctx, store.Key{}, []store.Entry{{Name: "n"}})
	_, checks["GetRecord"] = s.GetRecord(ctx, store.Key{})
	for _, checks["ListAllShards"] = range s.ListAllShards(ctx) {
	}
	for _, checks["RecordKeys"] = range s.RecordKeys(ctx, store.Key{}) {
	}
	for op, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: got %v, want an error wrapping ErrClosed", op, err)
		}
	}
}

// recorder is a slog.Handler that passes record messages to a channel,
// dropping them when it is full.
type recorder struct{ seen chan string }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	select {
	case r.seen <- rec.Message:
	default:
	}
	return nil
}

// TestRunClose runs the maintenance loop with a short interval until it has
// collected twice, stops it, closes the store, and checks that no goroutine
// is left behind.
func TestRunClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rec := &recorder{seen: make(chan string, 16)}
	s, err := Open(t.TempDir(), Config{GCInterval: time.Millisecond, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	// Garbage for the collector: big values, overwritten.
	for i := range 20 {
		data := make([]byte, 256<<10)
		data[0] = byte(i)
		id := store.ShardID{Shard: uint16(i % 4)}
		s.DeleteShard(ctx, id)
		if err := s.PutShard(ctx, id, coding.HashOf(data), data); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	for passes := 0; passes < 2; {
		select {
		case msg := <-rec.seen:
			if msg == "value-log garbage collection done" {
				passes++
			}
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		}
	}
	if err := s.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second concurrent Run: got %v, want an already-running error", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil after cancel", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestRunDisabled(t *testing.T) {
	s := openTest(t, Config{GCInterval: -1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

// levels is a slog.Handler that records the level and message of each
// record.
type levels struct{ got []string }

func (h *levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levels) WithGroup(string) slog.Handler            { return h }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	h.got = append(h.got, r.Level.String()+" "+r.Message)
	return nil
}

func TestBadgerLogger(t *testing.T) {
	h := &levels{}
	l := badgerLogger{slog.New(h)}
	l.Errorf("disk %s\n", "full")
	l.Warningf("slow %d", 3)
	l.Infof("chatter")
	l.Debugf("more chatter")
	want := []string{"ERROR disk full", "WARN slow 3"}
	if strings.Join(h.got, "|") != strings.Join(want, "|") {
		t.Errorf("logged %q, want %q", h.got, want)
	}
}
