package store

import (
	"context"
	"slices"
	"sync"
	"time"
)

// RecordMerge is one record merge of a batch: entries for the record key, as
// one MergeRecord call would take them.
type RecordMerge struct {
	Key     Key
	Entries []Entry
}

// MergeResult is what one merge of a batch returned: MergeRecord's count
// and error.
type MergeResult struct {
	Written int
	Err     error
}

// BatchMerger merges many records in one step. A batch is not atomic:
// each merge succeeds or fails on its own, exactly as separate MergeRecord
// calls would, but a store writes them in one transaction and a remote
// store sends them in one round trip.
type BatchMerger interface {
	// MergeRecords returns one result per merge, in order.
	MergeRecords(ctx context.Context, ms []RecordMerge) []MergeResult
}

// MergeAll merges ms into m: in one batch when m is a BatchMerger, else
// one MergeRecord call at a time.
func MergeAll(ctx context.Context, m RecordMerger, ms []RecordMerge) []MergeResult {
	if b, ok := m.(BatchMerger); ok {
		return b.MergeRecords(ctx, ms)
	}
	rs := make([]MergeResult, len(ms))
	for i, mg := range ms {
		rs[i].Written, rs[i].Err = m.MergeRecord(ctx, mg.Key, mg.Entries)
	}
	return rs
}

// Limits of one coalesced batch: its merges, and its bytes of names,
// values and per-entry encoding (entryOverhead each, more than any wire
// or disk encoding adds), far below a ring message's 8 MiB.
const (
	coalesceMaxMerges = 256
	coalesceMaxBytes  = 2 << 20
	entryOverhead     = 64
	// unboundedBatch bounds a batch none of whose merges has a deadline.
	unboundedBatch = time.Minute
)

// Coalescer turns concurrent MergeRecord calls into batches (group
// commit). At most Limit batches run at once; merges that arrive while
// they run wait, and the first of them sends all that waited as the next
// batch when a batch ends. A lone merge goes at once, alone, so an idle
// store pays nothing; under load the batches grow with the backlog, and
// a store pays one transaction or round trip per batch instead of per
// merge.
//
// With a linger (SetLinger), a merge that finds a free slot while merges
// arrive quickly waits up to the linger for others to join its batch, the
// way a disk log's group commit waits for company: a steady stream of
// merges that each found the slot free would otherwise go one per
// transaction or round trip. It lingers only while, over the recent
// arrivals, at least two merges come per linger, and only when merges
// have lately come while another was in flight (within the last
// gapCeiling lingers): an idle store still sends a lone merge at once,
// and a lone caller merging one record after another (a hand-off, a
// script) never waits for company that cannot come.
//
// Coalescer is safe for concurrent use and starts no goroutines: callers
// do the work.
type Coalescer struct {
	do    func(context.Context, []RecordMerge) []MergeResult
	limit int

	// The clock and the linger's wait; tests replace them.
	now  func() time.Time
	wait func(ctx context.Context, d time.Duration)

	mu      sync.Mutex
	running int
	waiting []*mergeWaiter
	linger  time.Duration
	last    time.Time     // when the last merge arrived
	gap     time.Duration // moving average of the time between arrivals
	crowded time.Time     // when a merge last arrived while another ran
}

type mergeWaiter struct {
	ctx  context.Context
	m    RecordMerge
	size int
	// msg brings a waiter its result, once its batch ran; first, to the
	// leader of a batch, the batch to run. One channel, as merges are
	// many: a batch's leader reads the batch before it runs it.
	msg chan waiterMsg

	leader bool // the batch it is in is its to run (under c.mu)
}

// NewCoalescer returns a Coalescer running batches with do, at most limit
// at once (at least 1). do returns one result per merge, in order.
func NewCoalescer(limit int, do func(ctx context.Context, ms []RecordMerge) []MergeResult) *Coalescer {
	return &Coalescer{do: do, limit: max(limit, 1), now: time.Now, wait: waitLinger}
}

// SetLinger sets how long a merge that would go alone waits for company
// while merges arrive at least two per d; zero (the default) never waits.
func (c *Coalescer) SetLinger(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.linger = max(d, 0)
	c.gap = gapCeiling * c.linger
}

// MergeLinger is the linger of the record merges a peer writes to its
// own store as soft state and sends to other peers (remote.Pool): under a
// registration storm, replica writes then go in batches of many per
// transaction and round trip (BENCHMARKS.md, REGISTER). It adds at most
// this much to a write, and only under load.
const MergeLinger = 10 * time.Millisecond

// gapCeiling bounds, in lingers, the time between two arrivals that the
// moving average takes in: after an idle spell, a few quick arrivals make
// the Coalescer linger again.
const gapCeiling = 4

// arrived records a merge's arrival and returns how long it should linger
// if it finds a slot free: the linger while the moving average of the
// time between arrivals (over about the last eight) is at most half of
// it and some merge arrived while another ran within the last
// gapCeiling lingers, else zero. Called under c.mu.
func (c *Coalescer) arrived() time.Duration {
	if c.linger == 0 {
		return 0
	}
	now := c.now()
	gap := min(now.Sub(c.last), gapCeiling*c.linger)
	c.last = now
	c.gap += (gap - c.gap) / 8
	if c.running > 0 {
		c.crowded = now
	}
	if 2*c.gap > c.linger || now.Sub(c.crowded) > gapCeiling*c.linger {
		return 0
	}
	return c.linger
}

func waitLinger(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// MergeRecord merges entries into record key through the next batch.
func (c *Coalescer) MergeRecord(ctx context.Context, key Key, entries []Entry) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	linger := c.arrived()
	if c.running < c.limit {
		c.running++
		c.mu.Unlock()
		if linger > 0 {
			return c.gather(ctx, key, entries, linger)
		}
		r := c.do(ctx, []RecordMerge{{Key: key, Entries: entries}})[0]
		c.next()
		return r.Written, r.Err
	}
	w := newWaiter(ctx, key, entries)
	c.waiting = append(c.waiting, w)
	c.mu.Unlock()
	select {
	case m := <-w.msg:
		if m.lead != nil {
			return c.lead(w, m.lead)
		}
		return m.res.Written, m.res.Err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if i := slices.Index(c.waiting, w); i >= 0 {
		c.waiting = slices.Delete(c.waiting, i, i+1)
		c.mu.Unlock()
		return 0, ctx.Err()
	}
	leader := w.leader
	c.mu.Unlock()
	if !leader { // in a batch another runs: its result will go unread
		return 0, ctx.Err()
	}
	// Ours to run, for the others in it, though we gave up.
	return c.lead(w, (<-w.msg).lead)
}

// waiterMsg is a batch to lead, or else a result.
type waiterMsg struct {
	lead []*mergeWaiter
	res  MergeResult
}

func newWaiter(ctx context.Context, key Key, entries []Entry) *mergeWaiter {
	size := 0
	for _, e := range entries {
		size += len(e.Name) + len(e.Value) + entryOverhead
	}
	return &mergeWaiter{ctx: ctx, m: RecordMerge{Key: key, Entries: entries}, size: size,
		msg: make(chan waiterMsg, 1)}
}

// gather lingers, holding the slot it took, while the merges that arrive
// wait; then it runs them in one batch behind its own merge. It never
// lingers past half of the time its context's deadline leaves. If the
// context ends meanwhile, its merge is dropped, unwritten, and the
// merges that waited go on as the next batch.
func (c *Coalescer) gather(ctx context.Context, key Key, entries []Entry, linger time.Duration) (int, error) {
	if d, ok := ctx.Deadline(); ok {
		linger = min(linger, time.Until(d)/2)
	}
	c.wait(ctx, linger)
	if err := ctx.Err(); err != nil {
		c.next()
		return 0, err
	}
	w := newWaiter(ctx, key, entries)
	c.mu.Lock()
	batch := c.take(w)
	c.mu.Unlock()
	c.run(batch)
	r := (<-w.msg).res
	return r.Written, r.Err
}

// take returns a batch of first and the merges waiting behind it, within
// the batch limits, and removes them from the waiting. Called under c.mu.
func (c *Coalescer) take(first *mergeWaiter) []*mergeWaiter {
	batch := []*mergeWaiter{first}
	size := first.size
	n := 0
	for n < len(c.waiting) && len(batch) < coalesceMaxMerges && size+c.waiting[n].size <= coalesceMaxBytes {
		size += c.waiting[n].size
		batch = append(batch, c.waiting[n])
		n++
	}
	c.waiting = slices.Delete(c.waiting, 0, n)
	return batch
}

// lead runs batch, which w leads, and returns w's own result.
func (c *Coalescer) lead(w *mergeWaiter, batch []*mergeWaiter) (int, error) {
	c.run(batch)
	r := (<-w.msg).res
	return r.Written, r.Err
}

// Waiting returns how many merges wait for a batch.
func (c *Coalescer) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiting)
}

// next gives the merges waiting to the first of them to run as a batch,
// or frees the slot of the batch that ended.
func (c *Coalescer) next() {
	c.mu.Lock()
	if len(c.waiting) == 0 {
		c.running--
		c.mu.Unlock()
		return
	}
	first := c.waiting[0]
	c.waiting = slices.Delete(c.waiting, 0, 1)
	batch := c.take(first)
	first.leader = true
	c.mu.Unlock()
	batch[0].msg <- waiterMsg{lead: batch}
}

// run runs a batch for its waiters and hands the slot on. The batch does
// not end when its leader's context does (the others still wait on it),
// only at the latest deadline among them (unboundedBatch if one has none).
func (c *Coalescer) run(batch []*mergeWaiter) {
	ms := make([]RecordMerge, len(batch))
	var deadline time.Time
	bounded := true
	for i, w := range batch {
		ms[i] = w.m
		d, ok := w.ctx.Deadline()
		if !ok {
			bounded = false
		} else if d.After(deadline) {
			deadline = d
		}
	}
	if !bounded {
		deadline = time.Now().Add(unboundedBatch)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(batch[0].ctx), deadline)
	defer cancel()
	rs := c.do(ctx, ms)
	for i, w := range batch {
		w.msg <- waiterMsg{res: rs[i]}
	}
	c.next()
}
