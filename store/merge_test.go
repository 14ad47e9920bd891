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

// lingerClock is a Coalescer's clock, moved by hand, and its linger's
// wait, which blocks until the test releases it.
type lingerClock struct {
	mu      sync.Mutex
	t       time.Time
	waits   []time.Duration
	hold    bool          // lingers block until release
	waiting chan struct{} // a held linger began
	release chan struct{} // end the held lingers
}

func newLingerClock() *lingerClock {
	return &lingerClock{t: time.Unix(1e9, 0), waiting: make(chan struct{}, 1), release: make(chan struct{})}
}

func (k *lingerClock) now() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.t
}

func (k *lingerClock) advance(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.t = k.t.Add(d)
}

func (k *lingerClock) wait(ctx context.Context, d time.Duration) {
	k.mu.Lock()
	k.waits = append(k.waits, d)
	hold := k.hold
	k.mu.Unlock()
	if hold {
		k.waiting <- struct{}{}
		select {
		case <-k.release:
		case <-ctx.Done():
		}
	}
}

// crowd gives c company: a merge (key {0, 0}) held in l's first batch
// while another (key {0, 1}) arrives a millisecond later; then it
// releases l and waits until both are written.
func crowd(t *testing.T, c *store.Coalescer, l *batchLog, k *lingerClock) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { c.MergeRecord(t.Context(), store.Key{0, 0}, entries(1)) })
	<-l.entered
	k.advance(time.Millisecond)
	wg.Go(func() { c.MergeRecord(t.Context(), store.Key{0, 1}, entries(1)) })
	waitFor(t, "a merge to wait behind the held batch", func() bool { return c.Waiting() == 1 })
	close(l.release)
	wg.Wait()
}

// testLinger is the linger of the Coalescers lingering returns.
const testLinger = 10 * time.Millisecond

// lingering returns a Coalescer of one batch at a time running l's
// batches, lingering testLinger by k's clock.
func lingering(l *batchLog, k *lingerClock) *store.Coalescer {
	c := store.NewCoalescer(1, l.do)
	store.SetLingerClock(c, k.now, k.wait)
	c.SetLinger(testLinger)
	return c
}

// untilOneLingers first gives c company (crowd), then sends merges with
// keys {1, i}, one per millisecond of k's clock, each under ctx(i) and
// each after the one before ended, until one lingers (k must hold
// lingers), and returns its i. The merges run in wg.
func untilOneLingers(t *testing.T, c *store.Coalescer, l *batchLog, k *lingerClock, wg *sync.WaitGroup, ctx func(i int) context.Context) int {
	t.Helper()
	crowd(t, c, l, k)
	for i := range 100 {
		k.advance(time.Millisecond)
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			c.MergeRecord(ctx(i), store.Key{1, byte(i)}, entries(1))
		})
		select {
		case <-done:
		case <-k.waiting:
			return i
		}
	}
	t.Fatal("no merge lingered at one per millisecond with a 10 ms linger, after one came while another ran")
	return -1
}

func (k *lingerClock) lingered() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.waits)
}

// Under a steady stream of merges that each find the slot free, from
// callers that merge at the same time, a merge lingers for company and
// the merges that come meanwhile share its batch. A lone caller's stream
// never lingers, nor does a lone merge after an idle spell.
func TestCoalescerLingersOnlyUnderLoad(t *testing.T) {
	l := newBatchLog()
	k := newLingerClock()
	c := lingering(l, k)

	// One caller, a merge every millisecond, each after the one before
	// ended: there is no one to wait for. None lingers.
	var wg sync.WaitGroup
	wg.Go(func() { <-l.entered; close(l.release) }) // the first batch runs at once
	for i := range 40 {
		k.advance(time.Millisecond)
		if _, err := c.MergeRecord(t.Context(), store.Key{9, byte(i)}, entries(1)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if n := k.lingered(); n != 0 {
		t.Fatalf("%d merges of one caller lingered; want none", n)
	}
	l = newBatchLog()
	c = lingering(l, k)

	// A merge every 6 ms: fewer than two per linger. None lingers, though
	// one came while another ran.
	crowd(t, c, l, k)
	for i := range 6 {
		k.advance(6 * time.Millisecond)
		if _, err := c.MergeRecord(t.Context(), store.Key{byte(i)}, entries(1)); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.lingered(); n != 0 {
		t.Fatalf("%d merges lingered at one per 6 ms with a 10 ms linger; want none", n)
	}
	l = newBatchLog()
	c = lingering(l, k)
	k.mu.Lock()
	k.hold = true
	k.mu.Unlock()
	// A merge every millisecond after one came while another ran: once
	// the average says so, one lingers.
	leader := untilOneLingers(t, c, l, k, &wg, func(int) context.Context { return t.Context() })
	for i := range 5 {
		k.advance(time.Millisecond)
		wg.Go(func() { c.MergeRecord(t.Context(), store.Key{2, byte(i)}, entries(1)) })
	}
	waitFor(t, "five merges to wait behind the lingering one", func() bool { return c.Waiting() == 5 })
	close(k.release)
	wg.Wait()
	l.mu.Lock()
	last := l.batches[len(l.batches)-1]
	l.mu.Unlock()
	if len(last) != 6 || last[0] != (store.Key{1, byte(leader)}) {
		t.Errorf("last batch %v: want the lingering merge first and the five that came meanwhile", last)
	}
	if k.waits[0] != testLinger {
		t.Errorf("lingered %v, want %v", k.waits[0], testLinger)
	}

	// After an idle second, a lone merge goes at once.
	k.advance(time.Second)
	before := k.lingered()
	if n, err := c.MergeRecord(t.Context(), store.Key{3}, entries(2)); n != 2 || err != nil {
		t.Errorf("merge after an idle spell: %d, %v", n, err)
	}
	if k.lingered() != before {
		t.Error("a lone merge after an idle second lingered")
	}
}

// A merge whose context ends while it lingers is not written; the merges
// that waited behind it still go, as a batch of their own.
func TestCoalescerCanceledLingerLeavesTheBatch(t *testing.T) {
	l := newBatchLog()
	k := newLingerClock()
	k.hold = true
	c := lingering(l, k)
	var wg sync.WaitGroup
	ctxs := make([]context.Context, 100)
	cancels := make([]context.CancelFunc, 100)
	for i := range ctxs {
		ctxs[i], cancels[i] = context.WithCancel(t.Context())
		defer cancels[i]()
	}
	var errs [3]error
	leader := untilOneLingers(t, c, l, k, &wg, func(i int) context.Context { return ctxs[i] })
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.MergeRecord(t.Context(), store.Key{2, byte(i)}, entries(1)) })
	}
	waitFor(t, "three merges to wait behind the lingering one", func() bool { return c.Waiting() == 3 })
	cancels[leader]()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("merge %d behind the canceled one: %v", i, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.batches {
		if slices.Contains(b, store.Key{1, byte(leader)}) {
			t.Errorf("the merge canceled while it lingered went in batch %v", b)
		}
	}
	last := l.batches[len(l.batches)-1]
	if len(last) != 3 || slices.ContainsFunc(last, func(k store.Key) bool { return k[0] != 2 }) {
		t.Errorf("last batch %v: want the three that waited", last)
	}
}
