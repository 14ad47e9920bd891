package ring

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// ObjectsConfig configures Objects.
type ObjectsConfig struct {
	// Locator finds placement sets. Required.
	Locator Locator
	// Dial reaches a peer's store. Required.
	Dial Dialer
	// Records holds manifests, on the replica set of each object's
	// storage index. Required.
	Records *Records
	// Spare is how many successors beyond a scheme's Total a put may fall
	// back on when a placement peer fails, and a get also asks (shards
	// drift one peer along when a peer dies, until repair moves them).
	// Zero: 4.
	Spare int
	// CallTimeout bounds each shard call to one peer. Zero: 30s.
	CallTimeout time.Duration
	// Workers is how many segments a get fetches and decodes at once: the
	// fetches wait on the network, so more than the cores. Zero: 8.
	Workers int
	// PutSegments is how many segments a put places at once. Memory held
	// is about that many segments' shards more. Zero: 4.
	PutSegments int
	// Logger receives corrupt shards (naming the peer) and failed calls.
	// Nil: discarded.
	Logger *slog.Logger
}

// Objects puts and gets erasure-coded objects on the ring. It is safe for
// concurrent use.
type Objects struct {
	cfg     ObjectsConfig
	corrupt atomic.Uint64
	read    atomic.Uint64
	moved   atomic.Uint64
}

// NewObjects returns Objects with cfg's defaults filled in.
func NewObjects(cfg ObjectsConfig) (*Objects, error) {
	if cfg.Locator == nil || cfg.Dial == nil || cfg.Records == nil {
		return nil, errors.New("ring: objects: Locator, Dial and Records are required")
	}
	if cfg.Spare == 0 {
		cfg.Spare = 4
	}
	if cfg.Spare < 0 {
		return nil, fmt.Errorf("ring: objects: negative Spare %d", cfg.Spare)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.PutSegments == 0 {
		cfg.PutSegments = 4
	}
	if cfg.Workers < 0 || cfg.PutSegments < 0 {
		return nil, errors.New("ring: objects: negative Workers or PutSegments")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Objects{cfg: cfg}, nil
}

// Errors callers act on.
var (
	// ErrTooFewPeers: the ring has fewer live peers than a scheme's Total,
	// so a put cannot place every shard on a distinct peer.
	ErrTooFewPeers = errors.New("too few live peers for the scheme")
	// ErrNotFound: no manifest is stored for the cap (never put, removed,
	// or put on another ring).
	ErrNotFound = errors.New("no such object")
)

// Counters reports what this Objects has seen since it was made.
type Counters struct {
	CorruptShards uint64 // shards that did not match their manifest hash
	ShardBytes    uint64 // shard bytes received from peers by gets
	// ShardsMoved counts shards a get found on another placement peer
	// than the one their index names: the peer asked for shard i held
	// another of the segment (the ring shifted since the put).
	ShardsMoved uint64
}

// Counters returns the counters.
func (o *Objects) Counters() Counters {
	return Counters{CorruptShards: o.corrupt.Load(), ShardBytes: o.read.Load(), ShardsMoved: o.moved.Load()}
}

// PlacementKey is where segment s of the object stored under si is placed:
// shard i goes to the i-th live peer clockwise from it. Each segment has its
// own key, so a large object spreads over the whole ring.
func PlacementKey(si coding.StorageIndex, s int) dht.ID {
	h := sha256.New()
	h.Write([]byte("voicering/placement/v1\x00"))
	h.Write(si[:])
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(s)))
	return dht.ID(h.Sum(nil))
}

// manifestQuorum is how widely the manifest of an object coded s is kept.
// A manifest must survive the same losses as the shards: it goes to
// max(R, parity+1) replicas and a put needs parity+1 (and a majority) of
// them. A manifest is immutable and checked against the cap, so a read
// trusts any replica that answers: R = 1.
func (o *Objects) manifestQuorum(s coding.Scheme) Quorum {
	n := max(o.cfg.Records.cfg.Replicas, s.Parity()+1)
	return Quorum{N: n, W: max(quorum(n), s.Parity()+1), R: 1}
}

// manifestRead is how a reader, who does not know the scheme yet, asks for
// a manifest: the first R live replicas, any one answer enough. The
// writer's replicas are the first N ≥ R live successors of the key, so
// while any of them lives, one is among the first R that are alive.
var manifestRead = Quorum{R: 1}

// manifestReadWide is the second look before a manifest is declared
// missing: as far along the ring as a successor list reaches.
var manifestReadWide = Quorum{N: 12, R: 1}

// manifestEntry names chunk i of a manifest in its record. A manifest
// (up to coding.MaxManifestSize) is cut into entries of at most
// store.MaxValueSize bytes.
func manifestEntry(i int) string { return fmt.Sprintf("manifest/%04d", i) }

// Put stores the object read from r, coded as p says, and returns its cap
// and manifest. It returns only when every shard of every segment is stored
// on a distinct peer and the manifest on a majority of its replicas, so the
// object survives the loss of any Total−Needed peers right after. On error
// it deletes what it placed (best effort): nothing reachable is left, and
// no cap is returned.
//
// Errors: ErrTooFewPeers (with how many peers the scheme needs); the
// coding errors of bad Params; a read error; failures to place a shard
// even on a spare peer; the context's error.
func (o *Objects) Put(ctx context.Context, r io.Reader, p coding.Params) (coding.Cap, *coding.Manifest, error) {
	key, err := coding.NewKey(nil)
	if err != nil {
		return coding.Cap{}, nil, err
	}
	si := key.StorageIndex()
	// Segments are placed PutSegments at a time, each from its own copy of
	// the shards (the encoder reuses its buffers once put returns); the
	// first failure stops the encoding.
	putCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var (
		mu       sync.Mutex
		placed   []store.ShardID
		placedOn []dht.Peer
		wg       sync.WaitGroup
	)
	slots := make(chan struct{}, o.cfg.PutSegments)
	m, err := coding.Encode(putCtx, r, key, p, func(ctx context.Context, seg *coding.Segment) error {
		own := &coding.Segment{Index: seg.Index, Hashes: seg.Hashes, Shards: make([][]byte, len(seg.Shards))}
		for i, sh := range seg.Shards {
			own.Shards[i] = bytes.Clone(sh)
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		wg.Go(func() {
			defer func() { <-slots }()
			peers, err := o.place(putCtx, si, own)
			mu.Lock()
			for i, peer := range peers {
				if peer != (dht.Peer{}) {
					placed = append(placed, store.ShardID{Index: si, Segment: uint32(own.Index), Shard: uint16(i)})
					placedOn = append(placedOn, peer)
				}
			}
			mu.Unlock()
			if err != nil {
				stop(err)
			}
		})
		return nil
	})
	wg.Wait()
	if cause := context.Cause(putCtx); cause != nil && !errors.Is(cause, ctx.Err()) {
		err = cause // a placement failed: say why, not just "canceled"
	}
	if err == nil {
		err = o.putManifest(ctx, si, m)
	}
	if err != nil {
		o.unplace(placed, placedOn)
		return coding.Cap{}, nil, fmt.Errorf("ring: put: %w", err)
	}
	h, err := m.Hash()
	if err != nil {
		return coding.Cap{}, nil, fmt.Errorf("ring: put: %w", err)
	}
	return coding.Cap{Key: key, Manifest: h}, m, nil
}

// place stores the shards of one segment on its placement peers and returns,
// for each shard index, the peer that holds it (zero where none does).
func (o *Objects) place(ctx context.Context, si coding.StorageIndex, seg *coding.Segment) ([]dht.Peer, error) {
	total := len(seg.Shards)
	peers, err := o.placement(ctx, si, seg.Index, total)
	if err != nil {
		return nil, err
	}
	holder := make([]dht.Peer, total)
	spares := peers[total:]
	todo := make([]int, total) // shard indexes still to place
	for i := range todo {
		todo[i] = i
	}
	target := slices.Clone(peers[:total])
	var errs []error
	for len(todo) > 0 {
		results := make([]error, len(todo))
		var wg sync.WaitGroup
		for j, i := range todo {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, o.cfg.CallTimeout)
				defer cancel()
				id := store.ShardID{Index: si, Segment: uint32(seg.Index), Shard: uint16(i)}
				results[j] = o.cfg.Dial(target[i]).PutShard(cctx, id, seg.Hashes[i], seg.Shards[i])
			})
		}
		wg.Wait()
		var failed []int
		for j, i := range todo {
			if results[j] == nil {
				holder[i] = target[i]
				continue
			}
			errs = append(errs, fmt.Errorf("shard %d on %s: %w", i, target[i], results[j]))
			o.cfg.Logger.Warn("shard put failed; trying a spare peer", "segment", seg.Index, "shard", i, "peer", target[i], "err", results[j])
			failed = append(failed, i)
		}
		if ctx.Err() != nil {
			return holder, context.Cause(ctx)
		}
		if len(failed) > len(spares) {
			return holder, fmt.Errorf("segment %d: %d shards could not be placed and %d spare peers remain: %w", seg.Index, len(failed), len(spares), errors.Join(errs...))
		}
		for _, i := range failed {
			target[i], spares = spares[0], spares[1:]
		}
		todo = failed
	}
	return holder, nil
}

// placement looks up the peers of segment s: Total of them and Spare more.
// Fewer than Total live peers may be a passing suspicion (a peer slow under
// load), so the lookup is retried with back-off before giving up.
func (o *Objects) placement(ctx context.Context, si coding.StorageIndex, s, total int) ([]dht.Peer, error) {
	wait := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		peers, err := lookupRetry(ctx, o.cfg.Locator, PlacementKey(si, s), total+o.cfg.Spare)
		if err != nil {
			return nil, fmt.Errorf("segment %d: look up placement: %w", s, err)
		}
		if len(peers) >= total {
			return peers, nil
		}
		if attempt == 3 {
			return nil, fmt.Errorf("%w: the ring has %d live peers and %d-shard coding needs %d; start more peers or lower --total", ErrTooFewPeers, len(peers), total, total)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
		wait *= 2
	}
}

// unplace deletes shards a failed put placed, with a fresh deadline: the
// put's context may be what failed.
func (o *Objects) unplace(ids []store.ShardID, on []dht.Peer) {
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.CallTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := o.cfg.Dial(on[i]).DeleteShard(ctx, id); err != nil {
				o.cfg.Logger.Warn("could not delete a shard of a failed put", "shard", id, "peer", on[i], "err", err)
			}
		})
	}
	wg.Wait()
}

func (o *Objects) putManifest(ctx context.Context, si coding.StorageIndex, m *coding.Manifest) error {
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	var es []store.Entry
	for i := 0; len(b) > 0; i++ {
		n := min(len(b), store.MaxValueSize)
		es = append(es, store.Entry{Name: manifestEntry(i), Value: b[:n]})
		b = b[n:]
	}
	// One batch stays within the store's batch limits (a 4 MiB manifest
	// is 256 entries but 4 MiB of values); write in slices that fit.
	per := store.MaxBatchSize / (store.MaxValueSize + 32)
	for len(es) > 0 {
		n := min(len(es), per)
		if err := o.cfg.Records.PutWith(ctx, store.Key(si), o.manifestQuorum(m.Scheme), es[:n]...); err != nil {
			return fmt.Errorf("store manifest: %w", err)
		}
		es = es[n:]
	}
	return nil
}

// Manifest fetches the manifest of the object c names, checked against the
// cap. Errors: ErrNotFound; coding.ErrManifestMismatch when the replicas
// return something else (a lying or damaged peer); record errors.
func (o *Objects) Manifest(ctx context.Context, c coding.Cap) (*coding.Manifest, error) {
	key := store.Key(c.StorageIndex())
	// A manifest needs no quorum: the first replica that holds one ends
	// the read. Before saying an object does not exist, look further along
	// the ring: while it settles (joins, a mass restart) lookups from
	// different peers can disagree on where a key's replicas start.
	var m *coding.Manifest
	var err error
	for _, q := range []Quorum{manifestRead, manifestReadWide} {
		var state []store.Entry
		if state, err = o.cfg.Records.StateUntil(ctx, key, q, holdsManifest); err != nil {
			break
		}
		if m, err = openManifest(c, state); !errors.Is(err, store.ErrNotFound) {
			break
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("ring: %w: nothing is stored for this cap (removed, never stored, or stored on another ring)", ErrNotFound)
	}
	if err != nil {
		// The first answer may come from a replica holding part of a
		// large manifest: ask them all before giving up.
		state, serr := o.cfg.Records.StateWith(ctx, key, Quorum{R: 1})
		if serr != nil {
			return nil, fmt.Errorf("ring: get manifest: %w", errors.Join(err, serr))
		}
		if m, oerr := openManifest(c, state); oerr == nil {
			return m, nil
		}
		return nil, fmt.Errorf("ring: get manifest: %w", err)
	}
	return m, nil
}

// holdsManifest reports whether a record's entries hold a manifest (or its
// deletion).
func holdsManifest(es []store.Entry) bool {
	return slices.ContainsFunc(es, func(e store.Entry) bool { return e.Name == manifestEntry(0) })
}

// openManifest assembles the manifest from a record's entries and checks it
// against the cap. It returns store.ErrNotFound when there is none (or it
// was removed).
func openManifest(c coding.Cap, state []store.Entry) (*coding.Manifest, error) {
	var b []byte
	for i, e := range manifestChunks(state) {
		if e.Deleted {
			return nil, store.ErrNotFound
		}
		if e.Name != manifestEntry(i) {
			return nil, fmt.Errorf("chunk %d missing (a put still in progress, or a damaged record)", i)
		}
		b = append(b, e.Value...)
	}
	if len(b) == 0 {
		return nil, store.ErrNotFound
	}
	return c.Open(b)
}

// manifestChunks returns the manifest entries of a record, in order.
func manifestChunks(es []store.Entry) []store.Entry {
	out := slices.DeleteFunc(slices.Clone(es), func(e store.Entry) bool { return len(e.Name) != len(manifestEntry(0)) || e.Name[:9] != "manifest/" })
	slices.SortFunc(out, func(a, b store.Entry) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Get writes the object c names to w. Segments are fetched ahead of the
// writer; for each, every placement peer (and Spare more) is asked at once,
// the first Needed shards that match the manifest are kept and the slower
// requests cancelled. A shard that does not match is logged with its peer
// and counted (Counters.CorruptShards), and another is used.
//
// Errors: ErrNotFound; a *coding.ShardError naming the segment and its
// missing and corrupt shards when fewer than Needed good ones came;
// coding.ErrDecrypt; a write error; the context's error.
func (o *Objects) Get(ctx context.Context, c coding.Cap, w io.Writer) error {
	m, err := o.Manifest(ctx, c)
	if err != nil {
		return err
	}
	return o.Read(ctx, c, m, w)
}

// Read is Get with the manifest already fetched (by Manifest, for the
// object's size or type). Errors as Get, but for ErrNotFound.
func (o *Objects) Read(ctx context.Context, c coding.Cap, m *coding.Manifest, w io.Writer) error {
	d, err := coding.NewDecoder(c.Key, m, o.cfg.Workers)
	if err != nil {
		return fmt.Errorf("ring: get: %w", err)
	}
	if err := d.Decode(ctx, w, o.fetcher(c.StorageIndex(), m)); err != nil {
		return fmt.Errorf("ring: get: %w", err)
	}
	return nil
}

// segmentReadAttempts bounds the lookups one segment read makes: six,
// 100 ms apart doubling, span 3.1 s. missedPeerTimeout bounds each call
// to a peer an earlier lookup named and the latest did not.
const (
	segmentReadAttempts = 6
	missedPeerTimeout   = 2 * time.Second
)

// fetcher returns the coding.Fetch of an object's segments.
func (o *Objects) fetcher(si coding.StorageIndex, m *coding.Manifest) coding.Fetch {
	return func(ctx context.Context, c *coding.Collector) error {
		s := c.Segment()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ask := func(peers []dht.Peer, first int, thorough bool, timeout time.Duration) {
			var wg sync.WaitGroup
			for k, p := range peers {
				wg.Go(func() {
					cctx, cancelCall := context.WithTimeout(ctx, timeout)
					defer cancelCall()
					for i, data := range o.segmentShards(cctx, p, si, s, first+k, m.Scheme.Total, thorough) {
						o.read.Add(uint64(len(data)))
						enough, err := c.Offer(i, data)
						if errors.Is(err, coding.ErrCorruptShard) {
							o.corrupt.Add(1)
							o.cfg.Logger.Warn("corrupt shard from peer", "segment", s, "shard", i, "peer", p, "err", err)
						}
						if enough {
							cancel() // the long tail is not needed
							return
						}
					}
				})
			}
			wg.Wait()
		}
		// The placement peers first, all at once; the spares only when
		// they did not give enough (shards drift to spares after failures,
		// until repair moves them home). Right after peers die, lookups may
		// still name them, and for a few seconds leave out live peers
		// that a failed call made suspect (a suspicion lasts up to 5 s,
		// and peers copy each other's lists): a segment still short is
		// looked up again, with back-off over about 3 s, and each later
		// pass also asks the peers earlier lookups named, before the
		// collector's shortfall is reported.
		wait := 100 * time.Millisecond
		var err error
		named := map[dht.ID]dht.Peer{} // by the lookups so far
		for attempt := range segmentReadAttempts {
			var peers []dht.Peer
			peers, _, err = o.cfg.Locator.Lookup(ctx, PlacementKey(si, s), m.Scheme.Total+o.cfg.Spare)
			if err == nil {
				total := min(m.Scheme.Total, len(peers))
				ask(peers[:total], 0, attempt > 0, o.cfg.CallTimeout)
				if !c.Enough() && len(peers) > total {
					ask(peers[total:], total, attempt > 0, o.cfg.CallTimeout)
				}
				if !c.Enough() && attempt > 0 {
					var missed []dht.Peer
					for id, p := range named {
						if !slices.ContainsFunc(peers, func(q dht.Peer) bool { return q.ID == id }) {
							missed = append(missed, p)
						}
					}
					// Most of them are the dead that newer lookups
					// dropped: a short wait each.
					ask(missed, m.Scheme.Total, true, min(o.cfg.CallTimeout, missedPeerTimeout))
				}
				for _, p := range peers {
					named[p.ID] = p
				}
			}
			if c.Enough() || attempt == segmentReadAttempts-1 {
				break
			}
			if serr := sleep(ctx, wait); serr != nil {
				return serr
			}
			wait *= 2
		}
		if err != nil && !c.Enough() {
			return fmt.Errorf("look up placement: %w", err)
		}
		return nil
	}
}

// segmentShards yields the shards of segment s that peer p holds. On a
// settled ring the peer at position pos holds shard pos and only that, so
// it is asked for that one, or for another of the segment when it does not
// hold it (the ring shifted since the put: one round trip, FindShard).
// Spare positions, and a second pass over a segment still short (thorough),
// list everything the peer holds of the object: shards may have drifted.
func (o *Objects) segmentShards(ctx context.Context, p dht.Peer, si coding.StorageIndex, s, pos, total int, thorough bool) func(yield func(int, []byte) bool) {
	return func(yield func(int, []byte) bool) {
		b := o.cfg.Dial(p)
		held := -1 // the shard of the segment p gave, if any
		if pos < total {
			id, data, _, err := store.FindShard(ctx, b, store.ShardID{Index: si, Segment: uint32(s), Shard: uint16(pos)})
			if err != nil { // not reachable, or nothing of the segment
				if !errors.Is(err, store.ErrNotFound) {
					o.cfg.Logger.Debug("shard get failed", "segment", s, "shard", pos, "peer", p, "err", err)
				}
				return
			}
			held = int(id.Shard)
			if held != pos {
				o.moved.Add(1)
			}
			if !yield(held, data) || !thorough {
				return
			}
		}
		for in, err := range b.ListShards(ctx, si) {
			if err != nil {
				return
			}
			if int(in.ID.Segment) != s || int(in.ID.Shard) == held {
				continue
			}
			data, _, err := b.GetShard(ctx, in.ID)
			if err != nil {
				continue
			}
			if !yield(int(in.ID.Shard), data) {
				return
			}
		}
	}
}

// Remove deletes the object c names: its manifest first (so it cannot be
// fetched from that moment), then its shards wherever the placement peers
// hold them. Errors: ErrNotFound; record errors. Shards that could not be
// deleted (a peer down) are logged; repair scans drop shards whose manifest
// is gone.
func (o *Objects) Remove(ctx context.Context, c coding.Cap) error {
	m, err := o.Manifest(ctx, c)
	if err != nil {
		return err
	}
	si := c.StorageIndex()
	b, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("ring: remove: %w", err)
	}
	var names []string
	for i := range (len(b) + store.MaxValueSize - 1) / store.MaxValueSize {
		names = append(names, manifestEntry(i))
	}
	q := o.manifestQuorum(m.Scheme)
	q.W = quorum(q.N)
	if err := o.cfg.Records.DeleteWith(ctx, store.Key(si), q, names...); err != nil {
		return fmt.Errorf("ring: remove: %w", err)
	}
	holders := map[dht.Peer]bool{}
	for s := range m.ShardHashes {
		peers, _, err := o.cfg.Locator.Lookup(ctx, PlacementKey(si, s), m.Scheme.Total+o.cfg.Spare)
		if err != nil {
			o.cfg.Logger.Warn("remove: placement lookup failed; shards left for repair to drop", "segment", s, "err", err)
			continue
		}
		for _, p := range peers {
			holders[p] = true
		}
	}
	var wg sync.WaitGroup
	for p := range holders {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, o.cfg.CallTimeout)
			defer cancel()
			b := o.cfg.Dial(p)
			var ids []store.ShardID
			for in, err := range b.ListShards(cctx, si) {
				if err != nil {
					o.cfg.Logger.Warn("remove: could not list shards", "peer", p, "err", err)
					break
				}
				ids = append(ids, in.ID)
			}
			for _, id := range ids {
				if err := b.DeleteShard(cctx, id); err != nil {
					o.cfg.Logger.Warn("remove: could not delete shard", "shard", id, "peer", p, "err", err)
				}
			}
		})
	}
	wg.Wait()
	return nil
}
