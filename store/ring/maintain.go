package ring

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// Watcher tells when a peer's neighbourhood changed: a *dht.Node.
type Watcher interface {
	// Subscribe returns a channel that receives the neighbourhood after
	// each change (skipping intermediate states for a slow reader), and a
	// function that ends the subscription.
	Subscribe() (<-chan dht.Neighbours, func())
}

// MaintainConfig configures a Maintainer.
type MaintainConfig struct {
	// Self is the peer being maintained. Required.
	Self dht.Peer
	// Local is its store. Required.
	Local Backend
	// Locator, Dial and Records reach the rest of the ring. Required.
	Locator Locator
	Dial    Dialer
	Records *Records
	// Neighbours triggers a pass when the neighbourhood changes. Nil: only
	// the periodic passes run.
	Neighbours Watcher
	// Period spaces passes when nothing changes (anti-entropy). Zero: 1m.
	Period time.Duration
	// Settle is how long a change must be quiet before a pass starts, so
	// a burst of joins causes one pass, and a peer that restarts at once
	// causes no rebuild at all: losses within a scheme's tolerance are not
	// urgent, and repair competes with reads. Zero: 10s.
	Settle time.Duration
	// Spare is how many successors past a scheme's Total are searched for
	// drifted shards (as ObjectsConfig.Spare). Zero: 4.
	Spare int
	// RepairRate bounds the shard bytes repair writes per second, so that
	// repair never starves foreground traffic. Zero: 8 MiB/s.
	RepairRate int
	// CallTimeout bounds each call to another peer. Zero: 30s.
	CallTimeout time.Duration
	// Scrub is how long a segment found whole is trusted before its
	// shards' hashes are checked against the manifest again (a placement
	// change checks it at once). Zero: 1h.
	Scrub time.Duration
	// Logger receives what repair did. Nil: discarded.
	Logger *slog.Logger
}

// MaintainStats counts what a Maintainer did. UnderRedundant is from the
// last finished pass; the others add up since start.
type MaintainStats struct {
	Passes          uint64    `json:"passes"`
	LastPass        time.Time `json:"last_pass"`
	RecordsPushed   uint64    `json:"records_pushed"`
	SegmentsChecked uint64    `json:"segments_checked"`
	UnderRedundant  int       `json:"under_redundant"` // segments found missing a shard in the last pass
	ShardsRebuilt   uint64    `json:"shards_rebuilt"`  // rebuilt by Reed–Solomon from others
	ShardsMoved     uint64    `json:"shards_moved"`    // copied to their placement peer as they were
	ShardsDropped   uint64    `json:"shards_dropped"`  // surplus copies deleted, or shards of removed objects
	RepairBytes     uint64    `json:"repair_bytes"`
}

// Maintainer keeps one peer's share of the ring whole, without a
// coordinator:
//
//   - hand-off: each record the peer holds is pushed to its current replica
//     set whenever that set changes, so a key keeps R copies through joins,
//     leaves and failures;
//   - repair: for each segment the peer holds a shard of, the first peer of
//     the placement set (and its spares) that holds any shard of it is the
//     repairer. It makes every placement peer hold one distinct shard —
//     copying drifted shards home, rebuilding lost ones from Needed others
//     (checked against the manifest), then deleting surplus copies — at no
//     more than RepairRate bytes per second. Shards of removed objects are
//     dropped.
//
// A pass runs after each settled neighbourhood change and every Period.
type Maintainer struct {
	cfg   MaintainConfig
	limit *limiter

	mu      sync.Mutex
	stats   MaintainStats
	pushed  map[store.Key][32]byte // replica set a record was last pushed to
	healthy map[segmentKey]checked // placement a segment was last found whole on
	kick    chan struct{}
}

type checked struct {
	sig [32]byte
	at  time.Time
}

type segmentKey struct {
	si  coding.StorageIndex
	seg uint32
}

// NewMaintainer returns a Maintainer with cfg's defaults filled in.
func NewMaintainer(cfg MaintainConfig) (*Maintainer, error) {
	if cfg.Local == nil || cfg.Locator == nil || cfg.Dial == nil || cfg.Records == nil {
		return nil, errors.New("ring: maintainer: Local, Locator, Dial and Records are required")
	}
	if cfg.Period == 0 {
		cfg.Period = time.Minute
	}
	if cfg.Settle == 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.Spare == 0 {
		cfg.Spare = 4
	}
	if cfg.RepairRate == 0 {
		cfg.RepairRate = 8 << 20
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.Scrub == 0 {
		cfg.Scrub = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Period < 0 || cfg.Settle < 0 || cfg.Spare < 0 || cfg.RepairRate < 0 || cfg.Scrub < 0 {
		return nil, errors.New("ring: maintainer: negative setting")
	}
	return &Maintainer{
		cfg:     cfg,
		limit:   newLimiter(cfg.RepairRate),
		pushed:  map[store.Key][32]byte{},
		healthy: map[segmentKey]checked{},
		kick:    make(chan struct{}, 1),
	}, nil
}

// Stats returns what the maintainer has done.
func (m *Maintainer) Stats() MaintainStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Kick asks for a pass as soon as possible.
func (m *Maintainer) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run runs passes until ctx ends, then returns nil.
func (m *Maintainer) Run(ctx context.Context) error {
	var changes <-chan dht.Neighbours
	if m.cfg.Neighbours != nil {
		c, cancel := m.cfg.Neighbours.Subscribe()
		defer cancel()
		changes = c
	}
	period := time.NewTicker(m.cfg.Period)
	defer period.Stop()
	settle := time.NewTimer(m.cfg.Settle) // a first pass once started
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			settle.Reset(m.cfg.Settle)
			continue
		case <-m.kick:
		case <-settle.C:
		case <-period.C:
		}
		m.Pass(ctx)
	}
}

// Pass runs one hand-off and repair pass over everything the peer holds.
func (m *Maintainer) Pass(ctx context.Context) {
	m.handOff(ctx)
	under := m.repair(ctx)
	m.mu.Lock()
	m.stats.Passes++
	m.stats.LastPass = time.Now()
	m.stats.UnderRedundant = under
	m.mu.Unlock()
}

// HandOver is what a peer about to leave the ring gracefully does: it
// pushes every record it holds to the record's replica set as it will be
// without this peer, and every shard to the peer that will take its place
// in the shard's placement set (the new last member, which holds no shard
// of that segment on a settled ring). Whatever it cannot hand over in
// time, repair restores from the other holders. It returns how many
// records and shards were handed over.
func (m *Maintainer) HandOver(ctx context.Context) (records, shards int, err error) {
	for key, err := range m.cfg.Local.RecordKeys(ctx, store.Key{}) {
		if err != nil {
			return records, shards, err
		}
		state, err := m.cfg.Local.GetRecordState(ctx, key)
		if err != nil {
			continue
		}
		reps, err := m.othersNear(ctx, keyID(key), m.spread(state))
		if err != nil {
			continue
		}
		stored := 0
		for _, p := range reps {
			cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
			if _, err := m.cfg.Dial(p).MergeRecord(cctx, key, state); err == nil {
				stored++
			}
			cancel()
		}
		if stored > 0 {
			records++
		}
	}
	manifests := map[coding.StorageIndex]*coding.Manifest{}
	for in, err := range m.cfg.Local.ListAllShards(ctx) {
		if err != nil {
			return records, shards, err
		}
		man, ok := manifests[in.ID.Index]
		if !ok {
			man, _ = m.manifest(ctx, in.ID.Index)
			manifests[in.ID.Index] = man
		}
		if man == nil || int(in.ID.Segment) >= len(man.ShardHashes) {
			continue
		}
		total := man.Scheme.Total
		place, err := m.othersNear(ctx, PlacementKey(in.ID.Index, int(in.ID.Segment)), total)
		if err != nil || len(place) < total {
			continue
		}
		data, hash, err := m.cfg.Local.GetShard(ctx, in.ID)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
		err = m.cfg.Dial(place[total-1]).PutShard(cctx, in.ID, hash, data)
		cancel()
		if err == nil || errors.Is(err, store.ErrExists) {
			shards++
		}
	}
	return records, shards, ctx.Err()
}

// othersNear returns the first n live peers clockwise from key other than
// this one: where a key's data belongs once this peer has left. (A leaving
// peer's own lookups still count it in.)
func (m *Maintainer) othersNear(ctx context.Context, key dht.ID, n int) ([]dht.Peer, error) {
	peers, err := lookupRetry(ctx, m.cfg.Locator, key, n+1)
	if err != nil {
		return nil, err
	}
	peers = slices.DeleteFunc(peers, func(p dht.Peer) bool { return p.ID == m.cfg.Self.ID })
	return peers[:min(n, len(peers))], nil
}

func peersSig(ps []dht.Peer) [32]byte {
	h := sha256.New()
	for _, p := range ps {
		h.Write(p.ID[:])
		h.Write([]byte(p.Addr))
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

func (m *Maintainer) handOff(ctx context.Context) {
	for key, err := range m.cfg.Local.RecordKeys(ctx, store.Key{}) {
		if err != nil {
			m.cfg.Logger.Warn("hand-off: listing records failed", "err", err)
			return
		}
		state, err := m.cfg.Local.GetRecordState(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			m.cfg.Logger.Warn("hand-off: reading record failed", "record", key, "err", err)
			continue
		}
		n := m.spread(state)
		set, err := m.cfg.Records.Replicas(ctx, key, n)
		if err != nil {
			m.cfg.Logger.Debug("hand-off: replica lookup failed", "record", key, "err", err)
			continue
		}
		sig := peersSig(set)
		m.mu.Lock()
		done := m.pushed[key] == sig
		m.mu.Unlock()
		if done {
			continue
		}
		stored, err := m.cfg.Records.Push(ctx, key, n, state)
		if stored == len(set) {
			m.mu.Lock()
			m.pushed[key] = sig
			m.stats.RecordsPushed++
			m.mu.Unlock()
		} else {
			m.cfg.Logger.Debug("hand-off: some replicas did not take the record", "record", key, "stored", stored, "of", len(set), "err", err)
		}
	}
}

// spread is how many replicas a record belongs on: a manifest as widely as
// its object's scheme needs (see Objects.manifestQuorum), others R.
func (m *Maintainer) spread(state []store.Entry) int {
	r := m.cfg.Records.cfg.Replicas
	for _, e := range state {
		if e.Name == manifestEntry(0) && !e.Deleted {
			if s, ok := coding.SchemeOf(e.Value); ok {
				return max(r, s.Parity()+1)
			}
		}
	}
	return r
}

// repair checks every segment the peer holds a shard of and returns how
// many were found missing a shard.
func (m *Maintainer) repair(ctx context.Context) int {
	var segs []segmentKey
	for in, err := range m.cfg.Local.ListAllShards(ctx) {
		if err != nil {
			m.cfg.Logger.Warn("repair: listing shards failed", "err", err)
			return 0
		}
		k := segmentKey{in.ID.Index, in.ID.Segment}
		if len(segs) == 0 || segs[len(segs)-1] != k {
			segs = append(segs, k)
		}
	}
	manifests := map[coding.StorageIndex]*coding.Manifest{}
	removed := map[coding.StorageIndex]bool{}
	under := 0
	for _, sk := range segs {
		if ctx.Err() != nil {
			return under
		}
		m.mu.Lock()
		m.stats.SegmentsChecked++
		m.mu.Unlock()
		man, ok := manifests[sk.si]
		if !ok && !removed[sk.si] {
			var gone bool
			man, gone = m.manifest(ctx, sk.si)
			manifests[sk.si] = man
			removed[sk.si] = gone
		}
		if removed[sk.si] {
			m.dropLocal(ctx, sk)
			continue
		}
		if man == nil || int(sk.seg) >= len(man.ShardHashes) {
			continue // manifest not (yet) readable: a put in progress, or a partition
		}
		missing, err := m.repairSegment(ctx, man, sk)
		if err != nil {
			m.cfg.Logger.Warn("repair: segment not repaired", "object", sk.si.String()[:16], "segment", sk.seg, "err", err)
		}
		if missing > 0 {
			under++
		}
	}
	return under
}

// manifest reads the manifest of si from its replicas, unverified (a
// repairer holds no cap) but parsed, and reports whether the object was
// removed (its manifest tombstoned).
func (m *Maintainer) manifest(ctx context.Context, si coding.StorageIndex) (man *coding.Manifest, removed bool) {
	state, err := m.cfg.Records.StateWith(ctx, store.Key(si), manifestRead)
	if err != nil {
		return nil, false
	}
	var live []store.Entry
	for _, e := range manifestChunks(state) {
		if e.Deleted {
			if e.Name == manifestEntry(0) {
				return nil, true
			}
			continue
		}
		live = append(live, e)
	}
	var b []byte
	for i, e := range live {
		if e.Name != manifestEntry(i) {
			return nil, false
		}
		b = append(b, e.Value...)
	}
	if len(b) == 0 {
		return nil, false
	}
	man, err = coding.ParseManifest(b)
	if err != nil {
		m.cfg.Logger.Warn("repair: unreadable manifest", "object", si.String()[:16], "err", err)
		return nil, false
	}
	return man, false
}

func (m *Maintainer) dropLocal(ctx context.Context, sk segmentKey) {
	for in, err := range m.cfg.Local.ListShards(ctx, sk.si) {
		if err != nil {
			return
		}
		if in.ID.Segment == sk.seg && m.cfg.Local.DeleteShard(ctx, in.ID) == nil {
			m.mu.Lock()
			m.stats.ShardsDropped++
			m.mu.Unlock()
		}
	}
}

// repairSegment brings one segment's placement set to one distinct shard
// per peer, if this peer is the segment's repairer. It returns how many
// shards were missing from the placement set.
func (m *Maintainer) repairSegment(ctx context.Context, man *coding.Manifest, sk segmentKey) (int, error) {
	total := man.Scheme.Total
	peers, _, err := m.cfg.Locator.Lookup(ctx, PlacementKey(sk.si, int(sk.seg)), total+m.cfg.Spare)
	if err != nil {
		return 0, fmt.Errorf("look up placement: %w", err)
	}
	place := peers[:min(total, len(peers))]
	sig := peersSig(place)
	m.mu.Lock()
	c := m.healthy[sk]
	whole := c.sig == sig && time.Since(c.at) < m.cfg.Scrub
	m.mu.Unlock()
	if whole {
		return 0, nil
	}
	held, bad := m.holdings(ctx, man, peers, sk)
	self := slices.IndexFunc(peers, func(p dht.Peer) bool { return p.ID == m.cfg.Self.ID })
	if self < 0 {
		// A stray: this peer is no longer near the segment. Its copies
		// join the picture so they can be moved home.
		good, wrong := m.localIndexes(ctx, man, sk)
		peers, held, bad = append(peers, m.cfg.Self), append(held, good), append(bad, wrong)
		self = len(peers) - 1
	}

	// Keep, for each placement peer, one shard no earlier peer keeps.
	kept := map[int]int{} // shard index → position
	for pos := range place {
		for _, i := range held[pos] {
			if _, dup := kept[i]; !dup {
				kept[i] = pos
				break
			}
		}
	}
	var missing, empty []int
	for i := range total {
		if _, ok := kept[i]; !ok {
			missing = append(missing, i)
		}
	}
	for pos := range place {
		if !slices.ContainsFunc(held[pos], func(i int) bool { return kept[i] == pos }) {
			empty = append(empty, pos)
		}
	}

	// The repairer is the first peer, in placement order, holding any
	// shard of the segment; every other holder leaves the segment to it
	// until the placement set changes.
	if first := slices.IndexFunc(held, func(h []int) bool { return len(h) > 0 }); first != self {
		m.mu.Lock()
		m.healthy[sk] = checked{sig, time.Now()}
		m.mu.Unlock()
		return len(missing), nil
	}
	if len(missing) > 0 && len(place) < total {
		return len(missing), fmt.Errorf("%w: %d live peers for %d shards", ErrTooFewPeers, len(place), total)
	}
	// Shards that do not match the manifest (a damaged or lying peer's)
	// go first: their place is taken by good ones below.
	for pos, p := range peers {
		for _, i := range bad[pos] {
			id := store.ShardID{Index: sk.si, Segment: sk.seg, Shard: uint16(i)}
			cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
			err := m.cfg.Dial(p).DeleteShard(cctx, id)
			cancel()
			if err != nil {
				return len(missing), fmt.Errorf("delete corrupt shard %d on %s: %w", i, p, err)
			}
			m.cfg.Logger.Warn("dropped a shard that does not match its manifest", "object", sk.si.String()[:16], "segment", sk.seg, "shard", i, "peer", p)
			m.mu.Lock()
			m.stats.ShardsDropped++
			m.mu.Unlock()
		}
	}
	var rebuilt [][]byte // all shards, rebuilt once if any must be
	for k, i := range missing {
		target := peers[empty[k]]
		data, how, err := m.source(ctx, man, sk, peers, held, i, &rebuilt)
		if err != nil {
			return len(missing), err
		}
		if err := m.limit.wait(ctx, len(data)); err != nil {
			return len(missing), err
		}
		id := store.ShardID{Index: sk.si, Segment: sk.seg, Shard: uint16(i)}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
		err = m.cfg.Dial(target).PutShard(cctx, id, man.ShardHashes[sk.seg][i], data)
		cancel()
		if err != nil {
			return len(missing), fmt.Errorf("put shard %d on %s: %w", i, target, err)
		}
		kept[i] = empty[k]
		held[empty[k]] = append(held[empty[k]], i)
		m.mu.Lock()
		if how == "rebuilt" {
			m.stats.ShardsRebuilt++
		} else {
			m.stats.ShardsMoved++
		}
		m.stats.RepairBytes += uint64(len(data))
		m.mu.Unlock()
		m.cfg.Logger.Info("repaired shard", "object", sk.si.String()[:16], "segment", sk.seg, "shard", i, "to", target, "how", how)
	}
	// The placement set is whole: drop surplus copies elsewhere.
	for pos, p := range peers {
		for _, i := range held[pos] {
			if kept[i] == pos && pos < len(place) {
				continue
			}
			id := store.ShardID{Index: sk.si, Segment: sk.seg, Shard: uint16(i)}
			cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
			if m.cfg.Dial(p).DeleteShard(cctx, id) == nil {
				m.mu.Lock()
				m.stats.ShardsDropped++
				m.mu.Unlock()
			}
			cancel()
		}
	}
	m.mu.Lock()
	m.healthy[sk] = checked{sig, time.Now()}
	m.mu.Unlock()
	return len(missing), nil
}

// holdings returns, for each peer, the shard indexes of the segment it
// holds that match the manifest (held), and those that do not (bad). A
// peer that did not answer holds nothing.
func (m *Maintainer) holdings(ctx context.Context, man *coding.Manifest, peers []dht.Peer, sk segmentKey) (held, bad [][]int) {
	held, bad = make([][]int, len(peers)), make([][]int, len(peers))
	var wg sync.WaitGroup
	for pos, p := range peers {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
			defer cancel()
			held[pos], bad[pos] = sortShards(man, sk, m.cfg.Dial(p).ListShards(cctx, sk.si))
		})
	}
	wg.Wait()
	return held, bad
}

func (m *Maintainer) localIndexes(ctx context.Context, man *coding.Manifest, sk segmentKey) (good, bad []int) {
	return sortShards(man, sk, m.cfg.Local.ListShards(ctx, sk.si))
}

// sortShards splits a listing's shards of one segment into those whose
// hash matches the manifest and those whose hash does not.
func sortShards(man *coding.Manifest, sk segmentKey, list iter.Seq2[store.ShardInfo, error]) (good, bad []int) {
	for in, err := range list {
		if err != nil {
			return good, bad
		}
		if in.ID.Segment != sk.seg {
			continue
		}
		i := int(in.ID.Shard)
		if i < man.Scheme.Total && in.Hash == man.ShardHashes[sk.seg][i] {
			good = append(good, i)
		} else {
			bad = append(bad, i)
		}
	}
	return good, bad
}

// source returns the bytes of shard i: copied from a peer holding it when
// one does (and it matches the manifest), else rebuilt from Needed others.
func (m *Maintainer) source(ctx context.Context, man *coding.Manifest, sk segmentKey, peers []dht.Peer, held [][]int, i int, rebuilt *[][]byte) ([]byte, string, error) {
	id := store.ShardID{Index: sk.si, Segment: sk.seg, Shard: uint16(i)}
	for pos, p := range peers {
		if !slices.Contains(held[pos], i) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
		data, _, err := m.cfg.Dial(p).GetShard(cctx, id)
		cancel()
		if err == nil && man.CheckShard(int(sk.seg), i, data) {
			return data, "moved", nil
		}
	}
	if *rebuilt == nil {
		c := man.Collect(int(sk.seg))
		for pos, p := range peers {
			for _, j := range held[pos] {
				if c.Enough() {
					break
				}
				cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
				data, _, err := m.cfg.Dial(p).GetShard(cctx, store.ShardID{Index: sk.si, Segment: sk.seg, Shard: uint16(j)})
				cancel()
				if err == nil {
					if _, err := c.Offer(j, data); err != nil {
						m.cfg.Logger.Warn("repair: corrupt shard from peer", "shard", j, "peer", p, "err", err)
					}
				}
			}
		}
		all, err := c.Rebuild()
		if err != nil {
			return nil, "", fmt.Errorf("rebuild shard %d: %w", i, err)
		}
		*rebuilt = all
	}
	return (*rebuilt)[i], "rebuilt", nil
}

// limiter is a token bucket of bytes per second.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(rate int) *limiter {
	return &limiter{rate: float64(rate), tokens: float64(rate), last: time.Now()}
}

// wait blocks until n bytes may be sent, or ctx ends.
func (l *limiter) wait(ctx context.Context, n int) error {
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	var d time.Duration
	if l.tokens < 0 {
		d = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
