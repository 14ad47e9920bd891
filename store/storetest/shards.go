package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
)

// TestShards runs the shard half of the contract against stores made by
// open, one fresh store per subtest.
func TestShards(t *testing.T, open func(t *testing.T) store.Shards) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Shards)
	}{
		{"RoundTrip", shardRoundTrip},
		{"DataNotAliased", shardDataNotAliased},
		{"PutIdempotent", shardPutIdempotent},
		{"ConcurrentPuts", shardConcurrentPuts},
		{"WrongHashRefused", shardWrongHash},
		{"OtherHashRefused", shardOtherHash},
		{"OversizeRefused", shardOversize},
		{"NotFound", shardNotFound},
		{"Delete", shardDelete},
		{"List", shardList},
		{"ListPages", shardListPages},
		{"ListStopEarly", shardListStopEarly},
		{"ListDeleteWhileListing", shardListDelete},
		{"CanceledContext", shardCanceled},
		{"Find", shardFind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

func shardID(index byte, seg uint32, shard uint16) store.ShardID {
	id := store.ShardID{Segment: seg, Shard: shard}
	id.Index[0] = index
	id.Index[31] = index ^ 0x5a
	return id
}

func putShard(t *testing.T, s store.Shards, id store.ShardID, data []byte) coding.Hash {
	t.Helper()
	h := coding.HashOf(data)
	must(t, "PutShard "+id.String(), s.PutShard(t.Context(), id, h, data))
	return h
}

func wantShard(t *testing.T, s store.Shards, id store.ShardID, want []byte) {
	t.Helper()
	got, h, err := s.GetShard(t.Context(), id)
	if err != nil {
		t.Fatalf("GetShard %s: %v", id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("GetShard %s: got %d bytes, want %d (data differs)", id, len(got), len(want))
	}
	if want := coding.HashOf(want); h != want {
		t.Fatalf("GetShard %s: got hash %s, want %s", id, h, want)
	}
}

func shardRoundTrip(t *testing.T, s store.Shards) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"small", 1000},
		{"medium", 100 << 10},
		{"one MiB", 1 << 20},
		{"max size", store.MaxShardSize},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := shardID(1, uint32(i), uint16(i))
			data := seq(i, tt.size)
			putShard(t, s, id, data)
			wantShard(t, s, id, data)
		})
	}
}

func shardDataNotAliased(t *testing.T, s store.Shards) {
	id := shardID(2, 0, 0)
	data := seq(2, 4096)
	want := bytes.Clone(data)
	putShard(t, s, id, data)
	got, _, err := s.GetShard(t.Context(), id)
	must(t, "GetShard", err)
	got[0] ^= 0xff
	wantShard(t, s, id, want)
}

func shardPutIdempotent(t *testing.T, s store.Shards) {
	id := shardID(3, 7, 1)
	data := seq(3, 50<<10)
	for range 3 {
		putShard(t, s, id, data)
	}
	wantShard(t, s, id, data)
	wantList(t, "after 3 puts", s.ListAllShards(t.Context()), []store.ShardID{id})
}

func shardConcurrentPuts(t *testing.T, s store.Shards) {
	id := shardID(4, 0, 0)
	data := seq(4, 30<<10)
	h := coding.HashOf(data)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.PutShard(t.Context(), id, h, data) })
	}
	wg.Wait()
	for i, err := range errs {
		must(t, "concurrent PutShard "+describe(i), err)
	}
	wantShard(t, s, id, data)
}

func shardWrongHash(t *testing.T, s store.Shards) {
	id := shardID(5, 1, 2)
	data := seq(5, 1000)
	err := s.PutShard(t.Context(), id, coding.HashOf([]byte("other")), data)
	wantErrIs(t, "PutShard with a wrong hash", err, store.ErrHashMismatch)
	_, _, err = s.GetShard(t.Context(), id)
	wantErrIs(t, "GetShard after a refused put", err, store.ErrNotFound)
}

func shardOtherHash(t *testing.T, s store.Shards) {
	id := shardID(6, 1, 2)
	first := seq(6, 1000)
	putShard(t, s, id, first)
	second := seq(7, 1000)
	err := s.PutShard(t.Context(), id, coding.HashOf(second), second)
	wantErrIs(t, "PutShard of other data under a stored id", err, store.ErrExists)
	wantShard(t, s, id, first)

	must(t, "DeleteShard", s.DeleteShard(t.Context(), id))
	putShard(t, s, id, second)
	wantShard(t, s, id, second)
}

func shardOversize(t *testing.T, s store.Shards) {
	id := shardID(8, 0, 0)
	data := make([]byte, store.MaxShardSize+1)
	err := s.PutShard(t.Context(), id, coding.HashOf(data), data)
	wantErrIs(t, "PutShard over MaxShardSize", err, store.ErrInvalid)
	_, _, err = s.GetShard(t.Context(), id)
	wantErrIs(t, "GetShard after a refused put", err, store.ErrNotFound)
}

func shardNotFound(t *testing.T, s store.Shards) {
	putShard(t, s, shardID(9, 0, 0), []byte("here"))
	for _, id := range []store.ShardID{shardID(9, 0, 1), shardID(9, 1, 0), shardID(10, 0, 0)} {
		_, _, err := s.GetShard(t.Context(), id)
		wantErrIs(t, "GetShard "+id.String(), err, store.ErrNotFound)
	}
}

func shardDelete(t *testing.T, s store.Shards) {
	keep, gone := shardID(11, 0, 0), shardID(11, 0, 1)
	putShard(t, s, keep, seq(11, 100))
	putShard(t, s, gone, seq(12, 100<<10))
	must(t, "DeleteShard", s.DeleteShard(t.Context(), gone))
	_, _, err := s.GetShard(t.Context(), gone)
	wantErrIs(t, "GetShard after DeleteShard", err, store.ErrNotFound)
	must(t, "DeleteShard again", s.DeleteShard(t.Context(), gone))
	must(t, "DeleteShard of a shard never stored", s.DeleteShard(t.Context(), shardID(12, 0, 0)))
	wantShard(t, s, keep, seq(11, 100))
	wantList(t, "after delete", s.ListAllShards(t.Context()), []store.ShardID{keep})
}

// wantList drains a listing and compares its IDs, in order, with want. It
// also checks that every hash and size matches the stored data's.
func wantList(t *testing.T, what string, list func(func(store.ShardInfo, error) bool), want []store.ShardID) {
	t.Helper()
	var got []store.ShardID
	for info, err := range list {
		if err != nil {
			t.Fatalf("%s: listing: %v", what, err)
		}
		got = append(got, info.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: listed %v, want %v", what, got, want)
	}
}

func shardList(t *testing.T, s store.Shards) {
	var all []store.ShardID
	byIndex := map[byte][]store.ShardID{}
	sizes := map[store.ShardID]int{}
	// Insert out of order; listings come back sorted.
	for _, ix := range []byte{0x30, 0x10, 0x20} {
		for _, seg := range []uint32{1 << 20, 0, 1} {
			for _, sh := range []uint16{300, 2, 0} {
				id := shardID(ix, seg, sh)
				sizes[id] = int(ix) + int(sh)
				putShard(t, s, id, seq(int(ix)+int(seg)+int(sh), sizes[id]))
			}
		}
	}
	for _, ix := range []byte{0x10, 0x20, 0x30} {
		for _, seg := range []uint32{0, 1, 1 << 20} {
			for _, sh := range []uint16{0, 2, 300} {
				byIndex[ix] = append(byIndex[ix], shardID(ix, seg, sh))
			}
		}
		all = append(all, byIndex[ix]...)
	}
	wantList(t, "ListAllShards", s.ListAllShards(t.Context()), all)
	for ix, want := range byIndex {
		wantList(t, "ListShards "+describe(ix), s.ListShards(t.Context(), shardID(ix, 0, 0).Index), want)
	}
	wantList(t, "ListShards of an absent index", s.ListShards(t.Context(), shardID(0x11, 0, 0).Index), nil)

	for info, err := range s.ListAllShards(t.Context()) {
		must(t, "ListAllShards", err)
		data, h, err := s.GetShard(t.Context(), info.ID)
		must(t, "GetShard "+info.ID.String(), err)
		if info.Hash != h || info.Size != int64(len(data)) || info.Size != int64(sizes[info.ID]) {
			t.Errorf("listed %s with hash %s size %d, want hash %s size %d", info.ID, info.Hash, info.Size, h, len(data))
		}
	}
}

func shardListPages(t *testing.T, s store.Shards) {
	// Enough shards to span several pages of any sensible page size.
	var want []store.ShardID
	for i := range 700 {
		id := shardID(0x40, uint32(i/10), uint16(i%10))
		putShard(t, s, id, seq(i, 8))
		want = append(want, id)
	}
	wantList(t, "ListShards of 700", s.ListShards(t.Context(), want[0].Index), want)
	wantList(t, "ListAllShards of 700", s.ListAllShards(t.Context()), want)
}

func shardListStopEarly(t *testing.T, s store.Shards) {
	for i := range 5 {
		putShard(t, s, shardID(0x50, 0, uint16(i)), seq(i, 8))
	}
	n := 0
	for _, err := range s.ListAllShards(t.Context()) {
		must(t, "ListAllShards", err)
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Fatalf("stopped after %d shards, want 2", n)
	}
	// The store is still usable after a listing stopped early.
	putShard(t, s, shardID(0x50, 1, 0), []byte("after"))
}

func shardListDelete(t *testing.T, s store.Shards) {
	var want []store.ShardID
	for i := range 300 {
		id := shardID(0x60, 0, uint16(i))
		putShard(t, s, id, seq(i, 16))
		want = append(want, id)
	}
	var got []store.ShardID
	for info, err := range s.ListAllShards(t.Context()) {
		must(t, "ListAllShards", err)
		got = append(got, info.ID)
		must(t, "DeleteShard while listing", s.DeleteShard(t.Context(), info.ID))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d shards while deleting, want %d in order", len(got), len(want))
	}
	wantList(t, "after deleting all", s.ListAllShards(t.Context()), nil)
}

func shardCanceled(t *testing.T, s store.Shards) {
	id := shardID(0x70, 0, 0)
	data := []byte("data")
	putShard(t, s, id, data)
	ctx := canceled()
	wantErrIs(t, "PutShard", s.PutShard(ctx, shardID(0x70, 0, 1), coding.HashOf(data), data), context.Canceled)
	_, _, err := s.GetShard(ctx, id)
	wantErrIs(t, "GetShard", err, context.Canceled)
	wantErrIs(t, "DeleteShard", s.DeleteShard(ctx, id), context.Canceled)
	n := 0
	for _, err := range s.ListAllShards(ctx) {
		wantErrIs(t, "ListAllShards", err, context.Canceled)
		n++
	}
	if n != 1 {
		t.Fatalf("a canceled listing yielded %d times, want once (its error)", n)
	}
	wantShard(t, s, id, data)
}

// shardFind checks store.FindShard on s: in one call when s is a
// store.ShardFinder, else by the generic fallback; both must agree.
func shardFind(t *testing.T, s store.Shards) {
	a, b, c := []byte("shard two of segment 1"), []byte("shard four of segment 1"), []byte("shard zero of segment 2")
	putShard(t, s, shardID(3, 1, 4), b)
	putShard(t, s, shardID(3, 1, 2), a)
	putShard(t, s, shardID(3, 2, 0), c)
	putShard(t, s, shardID(4, 0, 0), c) // another object
	for _, tt := range []struct {
		ask, want store.ShardID
		data      []byte
	}{
		{shardID(3, 1, 4), shardID(3, 1, 4), b}, // held: that one
		{shardID(3, 1, 0), shardID(3, 1, 2), a}, // not held: the first of the segment
		{shardID(3, 1, 3), shardID(3, 1, 2), a},
		{shardID(3, 2, 5), shardID(3, 2, 0), c},
	} {
		got, data, h, err := store.FindShard(t.Context(), s, tt.ask)
		if err != nil {
			t.Fatalf("FindShard %s: %v", tt.ask, err)
		}
		if got != tt.want || !bytes.Equal(data, tt.data) || h != coding.HashOf(tt.data) {
			t.Errorf("FindShard %s = %s (%q), want %s (%q)", tt.ask, got, data, tt.want, tt.data)
		}
	}
	for _, id := range []store.ShardID{shardID(3, 0, 0), shardID(3, 3, 1), shardID(5, 1, 2)} {
		if _, _, _, err := store.FindShard(t.Context(), s, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("FindShard %s (nothing of its segment stored): err = %v, want ErrNotFound", id, err)
		}
	}
}
