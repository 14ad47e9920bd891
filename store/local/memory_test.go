package local

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
)

// stores16 is how many stores the memory measurements open at once: a
// cluster test runs that many peers in one process.
const stores16 = 16

// defaultOptions is badger's own defaults, with the store's logger and
// without badger's own syncing (the store syncs), for comparison.
func defaultOptions(dir string, cfg Config, log badger.Logger) badger.Options {
	o := badger.DefaultOptions(dir)
	o.Logger = log
	o.SyncWrites = false
	return o
}

// heapPerStore opens n stores tuned by tune, writes a shard and a record
// into each, and returns the heap in use per open store in MiB, measured
// after a garbage collection with all of them open.
func heapPerStore(tb testing.TB, dir string, n int, tune func(string, Config, badger.Logger) badger.Options) float64 {
	tb.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stores := make([]*Store, 0, n)
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	ctx := tb.Context()
	data := make([]byte, 64<<10)
	for i := range n {
		s, err := open(filepath.Join(dir, fmt.Sprint(i)), Config{}, tune)
		if err != nil {
			tb.Fatalf("open store %d: %v", i, err)
		}
		stores = append(stores, s)
		data[0] = byte(i)
		if err := s.PutShard(ctx, store.ShardID{Shard: uint16(i)}, coding.HashOf(data), data); err != nil {
			tb.Fatal(err)
		}
		e := store.Entry{Name: "contact", Value: []byte("sip:alice@192.0.2.1"), Version: 1}
		if _, err := s.MergeRecord(ctx, store.Key{byte(i)}, []store.Entry{e}); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n) / (1 << 20)
}

// BenchmarkOpen16 reports the heap one open store holds, with 16 open in
// one process: go test ./store/local -run '^$' -bench Open16 -benchtime 1x
func BenchmarkOpen16(b *testing.B) {
	tests := []struct {
		name string
		tune func(string, Config, badger.Logger) badger.Options
	}{
		{"Tuned", badgerOptions},
		{"BadgerDefault", defaultOptions},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			var sum float64
			for i := 0; b.Loop(); i++ {
				sum += heapPerStore(b, filepath.Join(b.TempDir(), fmt.Sprint(i)), stores16, tt.tune)
			}
			b.ReportMetric(sum/float64(b.N), "heapMiB/store")
		})
	}
}

// TestOpen16 opens 16 tuned stores in one process and checks that each
// holds well under badger's default footprint, so that a change which
// brings back the defaults (about 86 MiB a store) fails here.
func TestOpen16(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 16 stores")
	}
	const limit = 24 // MiB per store; measured about 10
	got := heapPerStore(t, t.TempDir(), stores16, badgerOptions)
	t.Logf("heap in use: %.1f MiB per store", got)
	if got > limit {
		t.Errorf("heap in use: %.1f MiB per store, want at most %d", got, limit)
	}
}
