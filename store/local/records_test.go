package local

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voicering/voicering/store"
)

// A batch naming an entry several times stores the winning version of it,
// whatever the order the versions come in, alone or among other batches.
func TestMergeBatchWithRepeatedNames(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	e := func(name string, v uint64, deleted bool) store.Entry {
		x := store.Entry{Name: name, Version: v, Deleted: deleted}
		if !deleted {
			x.Value = []byte{byte(v)}
		}
		return x
	}
	batches := map[store.Key][]store.Entry{
		{1}: {e("b", 2, false), e("a", 1, false), e("b", 3, false), e("b", 1, false)},
		{2}: {e("c", 4, true), e("c", 5, false), e("c", 6, true)},
		{3}: {e("only", 7, false)},
	}
	want := map[store.Key][]store.Entry{
		{1}: {e("a", 1, false), e("b", 3, false)},
		{2}: {}, // the newest version of c is a tombstone
		{3}: {e("only", 7, false)},
	}
	// Once through MergeRecord, once as one MergeRecords batch.
	var ms []store.RecordMerge
	for k, b := range batches {
		if _, err := s.MergeRecord(ctx, k, b); err != nil {
			t.Fatalf("MergeRecord %s: %v", k, err)
		}
		ms = append(ms, store.RecordMerge{Key: store.Key{k[0] + 100}, Entries: b})
	}
	for i, r := range s.MergeRecords(ctx, ms) {
		if r.Err != nil {
			t.Fatalf("MergeRecords %s: %v", ms[i].Key, r.Err)
		}
	}
	for k, w := range want {
		for _, key := range []store.Key{k, {k[0] + 100}} {
			got, err := s.GetRecord(ctx, key)
			if errors.Is(err, store.ErrNotFound) {
				got, err = nil, nil
			}
			if err != nil {
				t.Fatalf("GetRecord %s: %v", key, err)
			}
			if !slices.EqualFunc(got, w, store.Entry.Equal) {
				t.Errorf("record %s = %v, want %v", key, got, w)
			}
		}
	}
}

// A batch with one bad entry is refused whole, whatever its size.
func TestMergeRefusesInvalidBatch(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	for _, b := range [][]store.Entry{
		{{Name: ""}},
		{{Name: "a", Version: 1}, {Name: ""}},
		{{Name: "t", Deleted: true, Value: []byte("x")}},
	} {
		if _, err := s.MergeRecord(ctx, store.Key{9}, b); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("MergeRecord(%v) = %v, want ErrInvalid", b, err)
		}
	}
	if got, err := s.GetRecord(ctx, store.Key{9}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record after refused batches = %v, %v; want empty", got, err)
	}
}

// BenchmarkMergeRecord merges one soft-state entry of 200 bytes into one
// of 1,024 records at a time, as a REGISTER's binding write does on each
// replica: from one writer, each merge after the one before (a hand-off),
// and from 64 at once, so that merges go in batches as under a
// registration storm.
//
//	go test -run '^$' -bench MergeRecord -benchmem ./store/local
func BenchmarkMergeRecord(b *testing.B) {
	value, expires := make([]byte, 200), time.Now().Add(time.Hour)
	merge := func(b *testing.B, s *Store, v uint64) {
		key := store.Key{byte(v), byte(v >> 8 % 4)}
		e := store.Entry{Name: "contact", Value: value, Version: v, Expires: expires}
		if _, err := s.MergeRecord(b.Context(), key, []store.Entry{e}); err != nil {
			b.Error(err)
		}
	}
	b.Run("writers=1", func(b *testing.B) {
		s := openTest(b, Config{})
		b.ReportAllocs()
		v := uint64(0)
		for b.Loop() {
			v++
			merge(b, s, v)
		}
	})
	b.Run("writers=64", func(b *testing.B) {
		s := openTest(b, Config{})
		var n atomic.Uint64
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				merge(b, s, n.Add(1))
			}
		})
	})
}
