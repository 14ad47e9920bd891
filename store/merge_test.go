package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voicering/voicering/store"
)

// batchLog is a Coalescer's do that records each batch, answers each merge
// with its entry count, and holds the first batch until released.
type batchLog struct {
	entered, release chan struct{}
	once             sync.Once

	mu      sync.Mutex
	batches [][]store.Key
	ctxErrs []error
}

func newBatchLog() *batchLog {
	return &batchLog{entered: make(chan struct{}), release: make(chan struct{})}
}

func (l *batchLog) do(ctx context.Context, ms []store.RecordMerge) []store.MergeResult {
	l.once.Do(func() { close(l.entered); <-l.release })
	l.mu.Lock()
	keys := make([]store.Key, len(ms))
	for i, m := range ms {
		keys[i] = m.Key
	}
	l.batches = append(l.batches, keys)
	l.ctxErrs = append(l.ctxErrs, ctx.Err())
	l.mu.Unlock()
	rs := make([]store.MergeResult, len(ms))
	for i, m := range ms {
		rs[i].Written = len(m.Entries)
	}
	return rs
}

func entries(n int) []store.Entry {
	es := make([]store.Entry, n)
	for i := range es {
		es[i] = store.Entry{Name: string(rune('a' + i)), Version: 1}
	}
	return es
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func TestCoalescerBatchesWhatWaited(t *testing.T) {
	l := newBatchLog()
	c := store.NewCoalescer(1, l.do)
	const n = 20
	got := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Go(func() { got[0], errs[0] = c.MergeRecord(t.Context(), store.Key{0}, entries(1)) })
	<-l.entered
	for i := 1; i < n; i++ {
		wg.Go(func() { got[i], errs[i] = c.MergeRecord(t.Context(), store.Key{byte(i)}, entries(1+i%3)) })
	}
	waitFor(t, "the merges to wait", func() bool { return c.Waiting() == n-1 })
	close(l.release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != 1+i%3 {
			t.Errorf("merge %d: %d, %v; want %d, nil (its own result)", i, got[i], errs[i], 1+i%3)
		}
	}
	if len(l.batches) != 2 || len(l.batches[0]) != 1 || len(l.batches[1]) != n-1 {
		t.Fatalf("batches %v: want the first merge alone, then the %d that waited in one", l.batches, n-1)
	}
	if c.Waiting() != 0 {
		t.Errorf("%d merges still wait", c.Waiting())
	}
	// Idle again: a lone merge goes at once, alone.
	if n, err := c.MergeRecord(t.Context(), store.Key{99}, entries(2)); n != 2 || err != nil {
		t.Errorf("lone merge: %d, %v", n, err)
	}
	if last := l.batches[len(l.batches)-1]; !slices.Equal(last, []store.Key{{99}}) {
		t.Errorf("lone merge went in batch %v", last)
	}
}

func TestCoalescerCanceledWaiterLeavesTheBatch(t *testing.T) {
	l := newBatchLog()
	c := store.NewCoalescer(1, l.do)
	var wg sync.WaitGroup
	wg.Go(func() { c.MergeRecord(t.Context(), store.Key{0}, entries(1)) })
	<-l.entered
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	wg.Go(func() {
		_, err := c.MergeRecord(ctx, store.Key{1}, entries(1))
		errc <- err
	})
	wg.Go(func() { c.MergeRecord(t.Context(), store.Key{2}, entries(1)) })
	waitFor(t, "two merges to wait", func() bool { return c.Waiting() == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled waiter: %v, want context.Canceled", err)
	}
	waitFor(t, "the canceled merge to leave", func() bool { return c.Waiting() == 1 })
	close(l.release)
	wg.Wait()
	if len(l.batches) != 2 || !slices.Equal(l.batches[1], []store.Key{{2}}) {
		t.Errorf("batches %v: want the canceled merge left out", l.batches)
	}
	for i, err := range l.ctxErrs {
		if err != nil {
			t.Errorf("batch %d ran with a context already ended: %v", i, err)
		}
	}
}

func TestCoalescerLimit(t *testing.T) {
	var mu sync.Mutex
	running, most := 0, 0
	gate := make(chan struct{})
	c := store.NewCoalescer(3, func(ctx context.Context, ms []store.RecordMerge) []store.MergeResult {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		<-gate
		mu.Lock()
		running--
		mu.Unlock()
		return make([]store.MergeResult, len(ms))
	})
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { c.MergeRecord(t.Context(), store.Key{byte(i)}, entries(1)) })
	}
	waitFor(t, "three batches to run and seven merges to wait", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return running == 3 && c.Waiting() == 7
	})
	close(gate)
	wg.Wait()
	if most != 3 {
		t.Errorf("at most %d batches ran at once, want 3", most)
	}
}

// A merge that gives up after its batch was formed returns at once; the
// batch runs on for the others.
func TestCoalescerCanceledMemberOfARunningBatch(t *testing.T) {
	calls := make(chan []store.RecordMerge)
	finish := make(chan struct{})
	c := store.NewCoalescer(1, func(ctx context.Context, ms []store.RecordMerge) []store.MergeResult {
		calls <- ms
		<-finish
		if err := ctx.Err(); err != nil {
			t.Errorf("batch ran with its context ended: %v", err)
		}
		return make([]store.MergeResult, len(ms))
	})
	var wg sync.WaitGroup
	wg.Go(func() { c.MergeRecord(t.Context(), store.Key{0}, entries(1)) })
	<-calls // the first merge runs alone
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	wg.Go(func() { c.MergeRecord(t.Context(), store.Key{1}, entries(1)) }) // will lead the batch
	waitFor(t, "the leader to wait", func() bool { return c.Waiting() == 1 })
	wg.Go(func() {
		_, err := c.MergeRecord(ctx, store.Key{2}, entries(1))
		errc <- err
	})
	waitFor(t, "both to wait", func() bool { return c.Waiting() == 2 })
	finish <- struct{}{}             // the first ends: the two go as one batch
	if ms := <-calls; len(ms) != 2 { // and it is running now
		t.Fatalf("batch of %d merges, want 2", len(ms))
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("member that gave up: %v, want context.Canceled at once", err)
	}
	finish <- struct{}{}
	wg.Wait()
}
