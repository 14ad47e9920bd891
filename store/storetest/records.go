package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voicering/voicering/store"
)

// TestRecords runs the record half of the contract against stores made by
// open, one fresh store per subtest.
func TestRecords(t *testing.T, open func(t *testing.T) store.Records) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Records)
	}{
		{"RoundTrip", recordRoundTrip},
		{"MergeIdempotent", recordMergeIdempotent},
		{"MergeRule", recordMergeRule},
		{"BatchDuplicates", recordBatchDuplicates},
		{"ConcurrentMerges", recordConcurrentMerges},
		{"MergeAll", recordMergeAll},
		{"Tombstones", recordTombstones},
		{"NotFound", recordNotFound},
		{"Sizes", recordSizes},
		{"InvalidRefused", recordInvalid},
		{"Expiry", recordExpiry},
		{"TombstoneExpiry", recordTombstoneExpiry},
		{"ExpiredOnArrival", recordExpiredOnArrival},
		{"Keys", recordKeys},
		{"CanceledContext", recordCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

func recordKey(b byte) store.Key {
	var k store.Key
	k[0], k[31] = b, ^b
	return k
}

var (
	writerA = [32]byte{'a'}
	writerB = [32]byte{'b'}
)

func merge(t *testing.T, s store.Records, key store.Key, entries ...store.Entry) int {
	t.Helper()
	n, err := s.MergeRecord(t.Context(), key, entries)
	if err != nil {
		t.Fatalf("MergeRecord %s: %v", key, err)
	}
	return n
}

// wantEntries compares entries, in order, up to store.Entry.Equal.
func wantEntries(t *testing.T, what string, got, want []store.Entry) {
	t.Helper()
	if !slices.EqualFunc(got, want, store.Entry.Equal) {
		t.Fatalf("%s: got %s, want %s", what, describe(got), describe(want))
	}
}

func wantRecord(t *testing.T, s store.Records, key store.Key, want ...store.Entry) {
	t.Helper()
	got, err := s.GetRecord(t.Context(), key)
	if len(want) == 0 {
		wantErrIs(t, "GetRecord "+key.String(), err, store.ErrNotFound)
		return
	}
	must(t, "GetRecord "+key.String(), err)
	wantEntries(t, "GetRecord "+key.String(), got, want)
}

func wantState(t *testing.T, s store.Records, key store.Key, want ...store.Entry) {
	t.Helper()
	got, err := s.GetRecordState(t.Context(), key)
	if len(want) == 0 {
		wantErrIs(t, "GetRecordState "+key.String(), err, store.ErrNotFound)
		return
	}
	must(t, "GetRecordState "+key.String(), err)
	wantEntries(t, "GetRecordState "+key.String(), got, want)
}

func recordRoundTrip(t *testing.T, s store.Records) {
	key, other := recordKey(1), recordKey(2)
	exp := time.Now().Add(time.Hour).Round(0)
	entries := []store.Entry{
		{Name: "zeta", Value: []byte("last"), Version: 3, Writer: writerB},
		{Name: "alpha", Value: []byte("sip:alice@192.0.2.1"), Version: 1, Writer: writerA, Expires: exp},
		{Name: "mid\x00dle", Value: []byte{0, 1, 2}, Version: 1 << 60, Writer: writerA},
	}
	if n, want := merge(t, s, key, entries...), 3; n != want {
		t.Errorf("MergeRecord wrote %d entries, want %d", n, want)
	}
	merge(t, s, other, store.Entry{Name: "alpha", Value: []byte("other record"), Version: 9})
	sorted := []store.Entry{entries[1], entries[2], entries[0]}
	wantRecord(t, s, key, sorted...)
	wantState(t, s, key, sorted...)
	wantRecord(t, s, other, store.Entry{Name: "alpha", Value: []byte("other record"), Version: 9})

	got, err := s.GetRecord(t.Context(), key)
	must(t, "GetRecord", err)
	got[0].Value[0] = 'X' // the caller's to modify
	wantRecord(t, s, key, sorted...)
}

func recordMergeIdempotent(t *testing.T, s store.Records) {
	key := recordKey(3)
	e := []store.Entry{
		{Name: "a", Value: []byte("1"), Version: 1},
		{Name: "b", Version: 2, Deleted: true, Expires: time.Now().Add(time.Hour)},
	}
	if n := merge(t, s, key, e...); n != 2 {
		t.Fatalf("first MergeRecord wrote %d, want 2", n)
	}
	for i := range 3 {
		if n := merge(t, s, key, e...); n != 0 {
			t.Fatalf("MergeRecord %d of the same entries wrote %d, want 0", i+2, n)
		}
	}
	wantState(t, s, key, e...)
}

func recordMergeRule(t *testing.T, s store.Records) {
	base := store.Entry{Name: "n", Value: []byte("base"), Version: 5, Writer: writerA}
	with := func(f func(*store.Entry)) store.Entry { e := base; f(&e); return e }
	tests := []struct {
		name     string
		incoming store.Entry
		wins     bool
	}{
		{"same entry", base, false},
		{"higher version", with(func(e *store.Entry) { e.Version = 6; e.Value = []byte("a") }), true},
		{"lower version", with(func(e *store.Entry) { e.Version = 4; e.Value = []byte("z") }), false},
		{"same version, higher writer", with(func(e *store.Entry) { e.Writer = writerB; e.Value = []byte("a") }), true},
		{"same version, lower writer", with(func(e *store.Entry) { e.Writer = [32]byte{}; e.Value = []byte("z") }), false},
		{"same version and writer, tombstone", with(func(e *store.Entry) { e.Deleted = true; e.Value = nil }), true},
		{"same version and writer, higher value", with(func(e *store.Entry) { e.Value = []byte("basf") }), true},
		{"same version and writer, lower value", with(func(e *store.Entry) { e.Value = []byte("bas") }), false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := recordKey(byte(0x80 + i))
			merge(t, s, key, base)
			n := merge(t, s, key, tt.incoming)
			want := base
			if tt.wins {
				want = tt.incoming
			}
			if got, wantN := n, map[bool]int{true: 1, false: 0}[tt.wins]; got != wantN {
				t.Errorf("MergeRecord wrote %d entries, want %d", got, wantN)
			}
			wantState(t, s, key, want)
		})
	}
}

func recordBatchDuplicates(t *testing.T, s store.Records) {
	key := recordKey(4)
	v1 := store.Entry{Name: "n", Value: []byte("v1"), Version: 1}
	v3 := store.Entry{Name: "n", Value: []byte("v3"), Version: 3}
	v2 := store.Entry{Name: "n", Value: []byte("v2"), Version: 2}
	if n := merge(t, s, key, v1, v3, v2); n != 1 {
		t.Errorf("MergeRecord of 3 versions of one name wrote %d, want 1", n)
	}
	wantRecord(t, s, key, v3)
}

func recordConcurrentMerges(t *testing.T, s store.Records) {
	key := recordKey(5)
	const writers, versions = 8, 10
	var wg sync.WaitGroup
	errs := make([]error, writers)
	want := map[string]store.Entry{}
	for w := range writers {
		writer := [32]byte{byte(w)}
		for v := range versions {
			for _, name := range []string{"shared", "own" + describe(w)} {
				e := store.Entry{Name: name, Value: seq(w*versions+v, 8), Version: uint64(v), Writer: writer}
				if old, ok := want[name]; ok {
					e = store.Merge(old, e)
				}
				want[name] = e
			}
		}
		wg.Go(func() {
			for v := range versions {
				batch := []store.Entry{
					{Name: "shared", Value: seq(w*versions+v, 8), Version: uint64(v), Writer: writer},
					{Name: "own" + describe(w), Value: seq(w*versions+v, 8), Version: uint64(v), Writer: writer},
				}
				if _, err := s.MergeRecord(t.Context(), key, batch); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		must(t, "MergeRecord by writer "+describe(w), err)
	}
	var wantSorted []store.Entry
	for _, e := range want {
		wantSorted = append(wantSorted, e)
	}
	slices.SortFunc(wantSorted, func(a, b store.Entry) int { return strings.Compare(a.Name, b.Name) })
	wantRecord(t, s, key, wantSorted...)
}

// recordMergeAll merges a batch of records through store.MergeAll (one
// MergeRecords call on a store.BatchMerger): each merge has its own
// outcome, as separate MergeRecord calls would.
func recordMergeAll(t *testing.T, s store.Records) {
	k1, k2, k3 := recordKey(0x40), recordKey(0x41), recordKey(0x42)
	a2 := store.Entry{Name: "a", Value: []byte("a2"), Version: 2, Writer: writerA}
	merge(t, s, k1, a2)
	a1 := store.Entry{Name: "a", Value: []byte("a1"), Version: 1, Writer: writerA}
	b1 := store.Entry{Name: "b", Value: []byte("b1"), Version: 1, Writer: writerA}
	c1 := store.Entry{Name: "c", Value: []byte("c1"), Version: 1, Writer: writerB}
	c2 := store.Entry{Name: "c", Value: []byte("c2"), Version: 2, Writer: writerB}
	rs := store.MergeAll(t.Context(), s, []store.RecordMerge{
		{Key: k1, Entries: []store.Entry{a1, b1}}, // a1 loses to the stored a2
		{Key: k2, Entries: []store.Entry{{Value: []byte("no name")}}},
		{Key: k3, Entries: []store.Entry{c1, c2}}, // merged within the batch
	})
	if len(rs) != 3 {
		t.Fatalf("MergeAll returned %d results for 3 merges", len(rs))
	}
	for i, want := range []int{1, 0, 1} {
		if i == 1 {
			wantErrIs(t, "the invalid merge of the batch", rs[i].Err, store.ErrInvalid)
			continue
		}
		must(t, fmt.Sprintf("merge %d of the batch", i), rs[i].Err)
		if rs[i].Written != want {
			t.Errorf("merge %d of the batch wrote %d entries, want %d", i, rs[i].Written, want)
		}
	}
	wantRecord(t, s, k1, a2, b1)
	wantState(t, s, k2)
	wantRecord(t, s, k3, c2)
}

func recordTombstones(t *testing.T, s store.Records) {
	key := recordKey(6)
	exp := time.Now().Add(time.Hour)
	live := store.Entry{Name: "a", Value: []byte("x"), Version: 1, Writer: writerA}
	other := store.Entry{Name: "b", Value: []byte("y"), Version: 1, Writer: writerA}
	merge(t, s, key, live, other)

	tomb := store.Entry{Name: "a", Version: 2, Writer: writerA, Deleted: true, Expires: exp}
	merge(t, s, key, tomb)
	wantRecord(t, s, key, other)
	wantState(t, s, key, tomb, other)

	// A late copy of the killed version loses against the tombstone.
	if n := merge(t, s, key, live); n != 0 {
		t.Errorf("MergeRecord of the killed version wrote %d, want 0", n)
	}
	wantRecord(t, s, key, other)

	// All entries dead: the record reads as not found, its state does not.
	tombB := store.Entry{Name: "b", Version: 2, Writer: writerA, Deleted: true, Expires: exp}
	merge(t, s, key, tombB)
	wantRecord(t, s, key)
	wantState(t, s, key, tomb, tombB)

	// A newer write brings the name back.
	back := store.Entry{Name: "a", Value: []byte("again"), Version: 3, Writer: writerA}
	merge(t, s, key, back)
	wantRecord(t, s, key, back)

	// A tombstone never stored before is kept too.
	fresh := store.Entry{Name: "c", Version: 1, Deleted: true, Expires: exp}
	merge(t, s, key, fresh)
	wantState(t, s, key, back, tombB, fresh)
}

func recordNotFound(t *testing.T, s store.Records) {
	merge(t, s, recordKey(7), store.Entry{Name: "n", Version: 1})
	wantRecord(t, s, recordKey(8))
	wantState(t, s, recordKey(8))
	// Keys sharing a prefix byte are distinct records.
	k := recordKey(7)
	k[31]++
	wantRecord(t, s, k)
}

func recordSizes(t *testing.T, s store.Records) {
	key := recordKey(9)
	big := store.Entry{Name: strings.Repeat("n", store.MaxNameSize), Value: seq(9, store.MaxValueSize), Version: 1}
	empty := store.Entry{Name: "e", Version: 1}
	nilValue := store.Entry{Name: "f", Value: []byte{}, Version: 1}
	merge(t, s, key, big, empty, nilValue)
	wantRecord(t, s, key, empty, nilValue, big)

	// A batch at both limits at once.
	var batch []store.Entry
	size := 0
	for i := 0; i < store.MaxBatchEntries; i++ {
		e := store.Entry{Name: describe(i), Version: 1}
		e.Value = seq(i, min(store.MaxBatchSize/store.MaxBatchEntries-len(e.Name), store.MaxValueSize))
		size += len(e.Name) + len(e.Value)
		batch = append(batch, e)
	}
	if size > store.MaxBatchSize {
		t.Fatalf("test batch is %d bytes, over MaxBatchSize", size)
	}
	if n := merge(t, s, recordKey(10), batch...); n != store.MaxBatchEntries {
		t.Fatalf("MergeRecord of a full batch wrote %d entries, want %d", n, store.MaxBatchEntries)
	}
	got, err := s.GetRecord(t.Context(), recordKey(10))
	must(t, "GetRecord of a full batch", err)
	if len(got) != store.MaxBatchEntries {
		t.Fatalf("GetRecord of a full batch: got %d entries, want %d", len(got), store.MaxBatchEntries)
	}
}

func recordInvalid(t *testing.T, s store.Records) {
	ok := store.Entry{Name: "ok", Value: []byte("v"), Version: 1}
	tooMany := make([]store.Entry, store.MaxBatchEntries+1)
	for i := range tooMany {
		tooMany[i] = store.Entry{Name: describe(i)}
	}
	var tooBig []store.Entry
	for i := 0; i*store.MaxValueSize <= store.MaxBatchSize; i++ {
		tooBig = append(tooBig, store.Entry{Name: describe(i), Value: make([]byte, store.MaxValueSize)})
	}
	tests := []struct {
		name  string
		batch []store.Entry
	}{
		{"empty name", []store.Entry{ok, {Value: []byte("v")}}},
		{"long name", []store.Entry{ok, {Name: strings.Repeat("n", store.MaxNameSize+1)}}},
		{"oversize value", []store.Entry{ok, {Name: "big", Value: make([]byte, store.MaxValueSize+1)}}},
		{"tombstone with value", []store.Entry{ok, {Name: "t", Deleted: true, Value: []byte("v")}}},
		{"expiry before 1970", []store.Entry{ok, {Name: "old", Expires: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)}}},
		{"too many entries", append([]store.Entry{ok}, tooMany...)},
		{"too many bytes", append([]store.Entry{ok}, tooBig...)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := recordKey(byte(0x90 + i))
			_, err := s.MergeRecord(t.Context(), key, tt.batch)
			wantErrIs(t, "MergeRecord", err, store.ErrInvalid)
			wantState(t, s, key) // nothing written, not even the valid entry
		})
	}
}

func recordExpiry(t *testing.T, s store.Records) {
	key := recordKey(11)
	keep := store.Entry{Name: "keep", Value: []byte("k"), Version: 1}
	soon := store.Entry{Name: "soon", Value: []byte("s"), Version: 1, Expires: time.Now().Add(1500 * time.Millisecond)}
	merge(t, s, key, keep, soon)
	wantRecord(t, s, key, keep, soon)

	lone := recordKey(12)
	merge(t, s, lone, soon)

	eventually(t, "the entry to expire", func() (bool, error) {
		got, err := s.GetRecord(t.Context(), key)
		return len(got) == 1, err
	})
	if time.Now().Before(soon.Expires) {
		t.Fatalf("entry gone before its expiry %v", soon.Expires)
	}
	wantRecord(t, s, key, keep)
	wantState(t, s, key, keep)
	wantRecord(t, s, lone)
	eventually(t, "the expired record to leave the key listing", func() (bool, error) {
		keys, err := collectKeys(s.RecordKeys(t.Context(), store.Key{}))
		return !slices.Contains(keys, lone) && slices.Contains(keys, key), err
	})
}

func recordTombstoneExpiry(t *testing.T, s store.Records) {
	key := recordKey(13)
	merge(t, s, key, store.Entry{Name: "n", Value: []byte("v"), Version: 1})
	tomb := store.Entry{Name: "n", Version: 2, Deleted: true, Expires: time.Now().Add(1500 * time.Millisecond)}
	merge(t, s, key, tomb)
	wantState(t, s, key, tomb)
	eventually(t, "the tombstone to expire", func() (bool, error) {
		_, err := s.GetRecordState(t.Context(), key)
		if err == nil {
			return false, nil
		}
		wantErrIs(t, "GetRecordState", err, store.ErrNotFound)
		return true, nil
	})
	// The killed version does not come back by itself.
	wantRecord(t, s, key)
}

func recordExpiredOnArrival(t *testing.T, s store.Records) {
	key := recordKey(14)
	merge(t, s, key, store.Entry{Name: "n", Value: []byte("v"), Version: 1})
	past := store.Entry{Name: "n", Value: []byte("w"), Version: 2, Expires: time.Now().Add(-time.Minute)}
	if n := merge(t, s, key, past); n != 1 {
		t.Errorf("MergeRecord of a newer but expired entry wrote %d, want 1", n)
	}
	wantRecord(t, s, key)
	wantState(t, s, key)
}

func collectKeys(seq func(func(store.Key, error) bool)) ([]store.Key, error) {
	var keys []store.Key
	for k, err := range seq {
		if err != nil {
			return keys, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func recordKeys(t *testing.T, s store.Records) {
	keys, err := collectKeys(s.RecordKeys(t.Context(), store.Key{}))
	must(t, "RecordKeys of an empty store", err)
	if len(keys) != 0 {
		t.Fatalf("RecordKeys of an empty store: got %d keys, want none", len(keys))
	}

	// Enough keys for several pages, each with a few entries, inserted out
	// of order, plus a tombstone-only record and the extreme keys.
	var want []store.Key
	for i := 599; i >= 0; i-- {
		var k store.Key
		k[0], k[1], k[31] = byte(i>>8), byte(i), 0xff
		want = append(want, k)
		merge(t, s, k,
			store.Entry{Name: "a", Version: 1},
			store.Entry{Name: "b", Version: 1},
			store.Entry{Name: strings.Repeat("\xff", 8), Version: 1})
	}
	var first, last store.Key
	for i := range last {
		last[i] = 0xff
	}
	merge(t, s, last, store.Entry{Name: "x", Version: 1})
	merge(t, s, first, store.Entry{Name: "x", Version: 1, Deleted: true, Expires: time.Now().Add(time.Hour)})
	want = append(want, first, last)
	slices.SortFunc(want, func(a, b store.Key) int { return strings.Compare(string(a[:]), string(b[:])) })

	got, err := collectKeys(s.RecordKeys(t.Context(), store.Key{}))
	must(t, "RecordKeys", err)
	if !slices.Equal(got, want) {
		t.Fatalf("RecordKeys: got %d keys, want %d in ascending order", len(got), len(want))
	}

	from := want[300]
	got, err = collectKeys(s.RecordKeys(t.Context(), from))
	must(t, "RecordKeys from a stored key", err)
	if !slices.Equal(got, want[300:]) {
		t.Fatalf("RecordKeys from %s: got %d keys, want %d", from, len(got), len(want[300:]))
	}
	from[31] = 0 // absent, between want[299] and want[300]
	got, err = collectKeys(s.RecordKeys(t.Context(), from))
	must(t, "RecordKeys from an absent key", err)
	if !slices.Equal(got, want[300:]) {
		t.Fatalf("RecordKeys from %s: got %d keys, want %d", from, len(got), len(want[300:]))
	}

	n := 0
	for _, err := range s.RecordKeys(t.Context(), store.Key{}) {
		must(t, "RecordKeys", err)
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("stopped after %d keys, want 3", n)
	}
}

func recordCanceled(t *testing.T, s store.Records) {
	key := recordKey(15)
	e := store.Entry{Name: "n", Version: 1}
	merge(t, s, key, e)
	ctx := canceled()
	_, err := s.MergeRecord(ctx, key, []store.Entry{{Name: "m", Version: 1}})
	wantErrIs(t, "MergeRecord", err, context.Canceled)
	_, err = s.GetRecord(ctx, key)
	wantErrIs(t, "GetRecord", err, context.Canceled)
	_, err = s.GetRecordState(ctx, key)
	wantErrIs(t, "GetRecordState", err, context.Canceled)
	n := 0
	for _, err := range s.RecordKeys(ctx, store.Key{}) {
		wantErrIs(t, "RecordKeys", err, context.Canceled)
		n++
	}
	if n != 1 {
		t.Fatalf("a canceled listing yielded %d times, want once (its error)", n)
	}
	wantRecord(t, s, key, e)
}
