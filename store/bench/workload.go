package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store/bench/loopback"
	"github.com/voicering/voicering/store/ring"
)

// object is one stored object of the workload.
type object struct {
	class int   // index in Config.Workload
	n     int   // index in the workload
	size  int64 // bytes
	crc   uint32
	cap   coding.Cap
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// content returns the bytes of workload object n: random, from the seed.
func content(seed uint64, n int, size int64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
		s[8+i] = byte(uint64(n) >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(s), size)
}

// opConcurrency is how many puts, removes or stats run at once. Fetches
// run one at a time, so that their latencies are the store's, not a
// queue's.
const opConcurrency = 4

// forEach runs f for each of n items, k at a time, and returns the errors.
func forEach(ctx context.Context, n, k int, f func(ctx context.Context, i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, k)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = context.Cause(ctx)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(ctx, i)
		})
	}
	wg.Wait()
	return errs
}

// putWorkload stores the workload with s's scheme and records the pass.
func (b *run) putWorkload(ctx context.Context, s *SchemeResult) ([]*object, error) {
	var objs []*object
	for ci, c := range b.cfg.Workload {
		for range c.Count {
			objs = append(objs, &object{class: ci, n: len(objs), size: c.Size})
		}
	}
	b.log.Info("storing the workload", "scheme", s.Name, "objects", len(objs))
	lat := make([]time.Duration, len(objs))
	start := time.Now()
	errs := forEach(ctx, len(objs), opConcurrency, func(ctx context.Context, i int) error {
		o := objs[i]
		h := crc32.New(castagnoli)
		t := time.Now()
		c, _, err := b.client.Objects().Put(ctx, io.TeeReader(content(b.cfg.Seed, o.n, o.size), h), coding.Params{Scheme: s.Scheme})
		lat[i] = time.Since(t)
		if err != nil {
			return fmt.Errorf("put object %d (%s): %w", o.n, sizeName(o.size), err)
		}
		o.cap, o.crc = c, h.Sum32()
		return nil
	})
	s.Put = b.pass(objs, lat, errs, time.Since(start), 0)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bench: storing the workload with %s on a whole ring failed (see the peers' logs in %s/logs): %w", s.Name, b.cfg.Dir, err)
	}
	return objs, nil
}

// pass summarises per-object latencies and errors.
func (b *run) pass(objs []*object, lat []time.Duration, errs []error, took time.Duration, shardBytes uint64) Pass {
	p := Pass{Objects: len(objs), Took: took, ShardBytes: shardBytes}
	per := make([][]time.Duration, len(b.cfg.Workload))
	count := make([]int, len(b.cfg.Workload)) // operations per class
	for i, o := range objs {
		count[o.class]++
		if errs[i] != nil {
			p.Failures.count(errs[i])
			if len(p.Errors) < 5 {
				p.Errors = append(p.Errors, errs[i].Error())
			}
			continue
		}
		p.OK++
		p.Bytes += o.size
		per[o.class] = append(per[o.class], lat[i])
	}
	for ci, c := range b.cfg.Workload {
		if c.Count == 0 {
			continue
		}
		cr := ClassResult{Class: c, OK: len(per[ci])}
		cr.Count = count[ci] // an object fetched k times counts k times
		cr.P50, cr.P99 = percentile(per[ci], 0.50), percentile(per[ci], 0.99)
		p.Classes = append(p.Classes, cr)
	}
	return p
}

func (f *Failures) count(err error) {
	switch {
	case errors.Is(err, dht.ErrNoPeers):
		f.Lookup++
	case errors.Is(err, ring.ErrNoQuorum) || errors.Is(err, ring.ErrNotFound):
		f.Manifest++
	case errors.Is(err, coding.ErrTooFewShards):
		f.Shards++
	default:
		f.Other++
	}
}

// percentile returns the q-quantile of ds by nearest rank; 0 for none.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// fetch gets every object, one at a time, checking its bytes.
func (b *run) fetch(ctx context.Context, objs []*object) (Pass, error) {
	var f fetched
	if err := b.fetchInto(ctx, objs, &f); err != nil {
		return Pass{}, err
	}
	return f.pass(b), nil
}

// fetched gathers the outcome of fetches, possibly several passes.
type fetched struct {
	objs       []*object
	lat        []time.Duration
	errs       []error
	took       time.Duration
	shardBytes uint64
	moved      uint64
}

func (f *fetched) pass(b *run) Pass {
	p := b.pass(f.objs, f.lat, f.errs, f.took, f.shardBytes)
	p.Moved = f.moved
	return p
}

// fetchInto gets every object of objs, one at a time, checks its bytes,
// and adds the outcome to f.
func (b *run) fetchInto(ctx context.Context, objs []*object, f *fetched) error {
	before := b.client.Objects().Counters()
	start := time.Now()
	for _, o := range objs {
		gctx, cancel := context.WithTimeout(ctx, b.cfg.GetTimeout)
		h := &checker{h: crc32.New(castagnoli)}
		t := time.Now()
		err := b.client.Objects().Get(gctx, o.cap, h)
		lat := time.Since(t)
		cancel()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		switch {
		case err != nil:
			err = fmt.Errorf("object %d (%s): %w", o.n, sizeName(o.size), err)
		case h.n != o.size || h.h.Sum32() != o.crc:
			err = fmt.Errorf("object %d (%s): got %d bytes that differ from the %d stored", o.n, sizeName(o.size), h.n, o.size)
		}
		f.objs, f.lat, f.errs = append(f.objs, o), append(f.lat, lat), append(f.errs, err)
	}
	f.took += time.Since(start)
	after := b.client.Objects().Counters()
	f.shardBytes += after.ShardBytes - before.ShardBytes
	f.moved += after.ShardsMoved - before.ShardsMoved
	return nil
}

// checker counts and checksums what a get writes.
type checker struct {
	h interface {
		io.Writer
		Sum32() uint32
	}
	n int64
}

func (c *checker) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// holders returns, for each object, for each segment, which peer address
// holds each good shard index.
type holding [][]map[int][]string // object → segment → shard → addresses

func (b *run) stat(ctx context.Context, objs []*object) (holding, int, error) {
	h := make(holding, len(objs))
	under := make([]bool, len(objs))
	errs := forEach(ctx, len(objs), opConcurrency*2, func(ctx context.Context, i int) error {
		st, err := b.client.Objects().Stat(ctx, objs[i].cap)
		if err != nil {
			return fmt.Errorf("stat object %d: %w", objs[i].n, err)
		}
		for _, seg := range st.Segments {
			m := map[int][]string{}
			for _, sh := range seg.Shards {
				if sh.Good {
					m[sh.Shard] = append(m[sh.Shard], sh.Peer.Addr)
				}
			}
			h[i] = append(h[i], m)
			if len(seg.Missing) > 0 || seg.Good < st.Manifest.Scheme.Total {
				under[i] = true
			}
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	n := 0
	for _, u := range under {
		if u {
			n++
		}
	}
	return h, n, nil
}

// waitWhole waits until every peer is running and found by lookups in
// ring order and, when objs is not empty, every segment of every object
// holds all its shards. It returns the last holding seen.
func (b *run) waitWhole(ctx context.Context, objs []*object, why string) (holding, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, b.cfg.SettleTimeout, fmt.Errorf("bench: the ring was not whole %v after %s", b.cfg.SettleTimeout, why))
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if err := b.cl.unexpectedExit(b.cl.nodes); err != nil {
			return nil, err
		}
		err := b.converged(ctx)
		if err == nil && len(objs) > 0 {
			var h holding
			var under int
			h, under, err = b.stat(ctx, objs)
			if err == nil && under == 0 {
				return h, nil
			}
			if err == nil {
				err = fmt.Errorf("%d of %d objects are missing shards", under, len(objs))
			}
		}
		if err == nil {
			return nil, nil
		}
		last = err
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.Canceled) {
				return nil, context.Cause(ctx)
			}
			return nil, fmt.Errorf("%w (last: %v); see the peers' logs in %s/logs", context.Cause(ctx), last, b.cfg.Dir)
		case <-tick.C:
		}
	}
}

// converged checks that lookups find every running peer, each at its
// place: a lookup from each peer's ID returns the peers that follow it
// in ID order.
func (b *run) converged(ctx context.Context) error {
	live := b.cl.live()
	want := map[string]bool{}
	for _, n := range live {
		want[n.addr] = true
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	all, _, err := b.client.Lookup(lctx, dht.ID{}, len(live))
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range all {
		seen[p.Addr] = true
	}
	if len(all) != len(live) || len(seen) != len(want) {
		return fmt.Errorf("lookups find %d of %d peers", len(seen), len(want))
	}
	for a := range seen {
		if !want[a] {
			return fmt.Errorf("lookups still find %s, which is down", a)
		}
	}
	ring := slices.Clone(all)
	slices.SortFunc(ring, func(a, b dht.Peer) int { return a.ID.Compare(b.ID) })
	n := min(len(ring), 8)
	for i, p := range ring {
		got, _, err := b.client.Lookup(lctx, p.ID, n)
		if err != nil {
			return err
		}
		// The successors of a peer's own ID start with it or just after it.
		incl, excl := clockwise(ring, i, n), clockwise(ring, i+1, n)
		if !samePeers(got, incl) && !samePeers(got, excl) {
			return fmt.Errorf("a lookup of %s's ID does not yet return its successors in order", p.Addr)
		}
	}
	return nil
}

func clockwise(ring []dht.Peer, from, n int) []dht.Peer {
	out := make([]dht.Peer, n)
	for i := range n {
		out[i] = ring[(from+i)%len(ring)]
	}
	return out
}

func samePeers(a, b []dht.Peer) bool {
	return slices.EqualFunc(a, b, func(x, y dht.Peer) bool { return x.ID == y.ID && x.Addr == y.Addr })
}

// waitUsable waits for the ring to converge and a tiny put to succeed.
func (b *run) waitUsable(ctx context.Context) error {
	if _, err := b.waitWhole(ctx, nil, "starting"); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.SettleTimeout)
	defer cancel()
	c, _, err := b.client.Objects().Put(cctx, bytes.NewReader([]byte("voicering bench")), coding.Params{Scheme: b.cfg.Scheme})
	if err != nil {
		return fmt.Errorf("bench: a tiny put on the new ring failed (see the peers' logs in %s/logs): %w", b.cfg.Dir, err)
	}
	if err := b.client.Objects().Remove(cctx, c); err != nil {
		return fmt.Errorf("bench: removing the tiny object: %w", err)
	}
	b.log.Info("ring ready", "peers", b.cfg.Peers)
	return nil
}

// rounds runs f = 0 … tolerated+1 for scheme s on its stored objects.
func (b *run) rounds(ctx context.Context, s *SchemeResult, objs []*object) error {
	for f := 0; f <= s.Tolerated+1; f++ {
		h, err := b.waitWhole(ctx, objs, fmt.Sprintf("restarting the peers killed before round %d of %s", f, s.Name))
		if err != nil {
			return err
		}
		if err := b.quiet(ctx, fmt.Sprintf("round %d of %s", f, s.Name)); err != nil {
			return err
		}
		victims := b.choose(f)
		r := Round{Lost: f}
		dead := map[string]bool{}
		for _, n := range victims {
			r.Killed = append(r.Killed, n.addr)
			dead[n.addr] = true
		}
		r.Affected, r.AtRisk = exposure(h, dead, s.Scheme)
		for _, n := range victims {
			b.cl.kill(n)
		}
		b.log.Info("fetching", "scheme", s.Name, "lost", f, "affected", r.Affected, "at_risk", r.AtRisk)
		if r.Pass, err = b.fetch(ctx, objs); err != nil {
			return err
		}
		b.log.Info("fetched", "scheme", s.Name, "lost", f, "ok", r.OK, "of", r.Objects, "took", r.Took.Round(time.Millisecond))
		for _, n := range victims {
			if err := b.cl.restart(ctx, n, 0); err != nil {
				return err
			}
		}
		s.Rounds = append(s.Rounds, r)
	}
	return nil
}

// quiet waits for the ring to be idle before a measurement, and notes it
// in the report when it never was.
func (b *run) quiet(ctx context.Context, before string) error {
	ok, err := b.cl.waitIdle(ctx, b.cfg.IdleTimeout)
	if err != nil {
		return err
	}
	if !ok {
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("the peers were still busy (over %.2f cores) %v after the ring was whole, before %s; measured anyway", idle, b.cfg.IdleTimeout, before))
	}
	return nil
}

// choose picks f distinct peers, from the seed.
func (b *run) choose(f int) []*node {
	idx := b.rng.Perm(len(b.cl.nodes))[:f]
	slices.Sort(idx)
	out := make([]*node, f)
	for i, j := range idx {
		out[i] = b.cl.nodes[j]
	}
	return out
}

// exposure counts the objects holding a shard on a dead peer, and those
// with a segment left with fewer than Needed shards elsewhere.
func exposure(h holding, dead map[string]bool, s coding.Scheme) (affected, atRisk int) {
	for _, segs := range h {
		hit, lost := false, false
		for _, seg := range segs {
			left := 0
			for _, addrs := range seg {
				alive := false
				for _, a := range addrs {
					if dead[a] {
						hit = true
					} else {
						alive = true
					}
				}
				if alive {
					left++
				}
			}
			if left < s.Needed {
				lost = true
			}
		}
		if hit {
			affected++
		}
		if lost {
			atRisk++
		}
	}
	return affected, atRisk
}

// remove deletes a scheme's workload, so the next one starts on an empty
// ring.
func (b *run) remove(ctx context.Context, objs []*object) error {
	if _, err := b.waitWhole(ctx, objs, "the last round"); err != nil {
		return err
	}
	errs := forEach(ctx, len(objs), opConcurrency, func(ctx context.Context, i int) error {
		return b.client.Objects().Remove(ctx, objs[i].cap)
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: removing a workload: %w", err)
	}
	return nil
}

// slowPasses is how many times the slow-peer comparison fetches each
// object, on the healthy ring and with the slow peer, in alternation.
const slowPasses = 3

// slowPeer compares fetches with one peer answering SlowDelay late against
// fetches on the healthy ring. The peer is restarted slow once; then
// SIGUSR2 and SIGUSR1 switch it between healthy and slow for alternating
// passes over the workload, so both see the same processes, caches and
// machine load: p99 over one pass of 200 objects is the second slowest,
// which one hiccup of a peer on a shared machine would decide.
func (b *run) slowPeer(ctx context.Context, objs []*object) error {
	if _, err := b.waitWhole(ctx, objs, "the last round"); err != nil {
		return err
	}
	res := &SlowResult{Delay: b.cfg.SlowDelay}
	n := b.choose(1)[0]
	res.Peer = n.addr
	b.cl.kill(n)
	if err := b.cl.restart(ctx, n, b.cfg.SlowDelay); err != nil {
		return err
	}
	if _, err := b.waitWhole(ctx, objs, "restarting a peer slowed down"); err != nil {
		return err
	}
	if err := b.quiet(ctx, "the slow-peer comparison"); err != nil {
		return err
	}
	var healthy, slow fetched
	for pass := range slowPasses {
		for _, on := range []bool{false, true} {
			if err := setSlow(n, on); err != nil {
				return fmt.Errorf("bench: switching %s's answer delay: %w", n, err)
			}
			// The peer handles the signal in microseconds; calls in
			// flight finish under the old setting.
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			into := &healthy
			if on {
				into = &slow
			}
			b.log.Info("fetching for the slow-peer comparison", "pass", pass+1, "of", slowPasses, "slow", on, "peer", n.addr, "delay", b.cfg.SlowDelay)
			if err := b.fetchInto(ctx, objs, into); err != nil {
				return err
			}
		}
	}
	res.Healthy, res.Slow = healthy.pass(b), slow.pass(b)
	b.cl.kill(n)
	if err := b.cl.restart(ctx, n, 0); err != nil {
		return err
	}
	b.rep.Slow = res
	return nil
}

// big puts and gets one BigSize object and copies as many bytes over a
// raw loopback TLS connection.
func (b *run) big(ctx context.Context, scheme coding.Scheme) error {
	if _, err := b.waitWhole(ctx, nil, "the slow-peer measurement"); err != nil {
		return err
	}
	res := &BigResult{Size: b.cfg.BigSize, Scheme: scheme}
	o := &object{n: -1, size: b.cfg.BigSize}
	b.log.Info("storing the large object", "size", sizeName(o.size))
	h := crc32.New(castagnoli)
	t := time.Now()
	c, _, err := b.client.Objects().Put(ctx, io.TeeReader(content(b.cfg.Seed, o.n, o.size), h), coding.Params{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("bench: put the %s object: %w", sizeName(o.size), err)
	}
	res.Put = time.Since(t)
	o.cap, o.crc = c, h.Sum32()
	if err := b.quiet(ctx, "getting the large object"); err != nil {
		return err
	}
	b.log.Info("getting the large object")
	p, err := b.fetch(ctx, []*object{o})
	if err != nil {
		return err
	}
	if p.OK != 1 {
		return fmt.Errorf("bench: get the %s object on a whole ring: %s", sizeName(o.size), p.Errors[0])
	}
	res.Get = p.Took
	b.log.Info("copying the same bytes over loopback TLS")
	if res.TLS, err = loopback.TLS(ctx, b.cfg.BigSize); err != nil {
		return err
	}
	if err := b.client.Objects().Remove(ctx, o.cap); err != nil {
		return fmt.Errorf("bench: remove the large object: %w", err)
	}
	b.rep.Big = res
	return nil
}

// repair kills one peer for good and times how long the ring takes to
// make every object whole again.
func (b *run) repair(ctx context.Context, objs []*object) error {
	h, err := b.waitWhole(ctx, objs, "the large-object measurement")
	if err != nil {
		return err
	}
	if err := b.quiet(ctx, "the repair measurement"); err != nil {
		return err
	}
	n := b.choose(1)[0]
	res := &RepairResult{Peer: n.addr, Objects: len(objs)}
	res.Affected, _ = exposure(h, map[string]bool{n.addr: true}, coding.Scheme{Needed: 1})
	b.log.Info("killing a peer for good; waiting for repair", "peer", n.addr, "affected", res.Affected)
	start := time.Now()
	b.cl.kill(n)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RepairTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		res.Polls++
		_, under, err := b.stat(ctx, objs)
		if err == nil && under == 0 && b.converged(ctx) == nil {
			res.Took = time.Since(start)
			break
		}
		if err == nil {
			err = fmt.Errorf("%d of %d objects still missing shards", under, len(objs))
		}
		last = err
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("bench: repair did not finish within %v of killing %s (last: %v); see the peers' logs in %s/logs", b.cfg.RepairTimeout, n, last, b.cfg.Dir)
			}
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
	b.log.Info("repaired", "took", res.Took.Round(time.Millisecond))
	b.rep.Repair = res
	return nil
}
