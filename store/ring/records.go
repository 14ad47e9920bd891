package ring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// RecordsConfig configures Records.
type RecordsConfig struct {
	// Locator finds a key's replica set. Required.
	Locator Locator
	// Dial reaches a replica's store. Required.
	Dial Dialer
	// Replicas is R, the number of peers that hold each record: the first
	// R live peers clockwise from its key. Zero: 3.
	Replicas int
	// Writer is stamped on the entries written through these Records (the
	// writing peer's or client's node ID). Zero: left as given.
	Writer dht.ID
	// CallTimeout bounds each call to one replica, so that a hung peer
	// cannot hold a write or read past it. Zero: 5s.
	CallTimeout time.Duration
	// TombstoneTTL is how long a deletion is remembered; it must outlive
	// the entries it removes (see store.Entry.Deleted). Zero: 30 days.
	TombstoneTTL time.Duration
	// Now is the clock entry versions and expiries are read from.
	// Nil: time.Now.
	Now func() time.Time
	// Logger receives read repairs and replica failures. Nil: discarded.
	Logger *slog.Logger
}

// Records reads and writes records on their replica sets. Writes go to all
// R replicas at once and succeed when a majority stored them; reads ask all
// R, merge what they answer entry by entry (store.Merge, last writer wins)
// and write the merged state back to replicas that were behind (read
// repair). Any majority write is seen by any later majority read.
//
// Records is safe for concurrent use.
type Records struct {
	cfg RecordsConfig

	mu   sync.Mutex
	last uint64 // last version issued, for monotonic versions
}

// NewRecords returns Records with cfg's defaults filled in.
func NewRecords(cfg RecordsConfig) (*Records, error) {
	if cfg.Locator == nil || cfg.Dial == nil {
		return nil, errors.New("ring: records: Locator and Dial are required")
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	if cfg.Replicas < 1 {
		return nil, fmt.Errorf("ring: records: %d replicas; need at least 1", cfg.Replicas)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.TombstoneTTL == 0 {
		cfg.TombstoneTTL = 30 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Records{cfg: cfg}, nil
}

// ErrNoQuorum means fewer than a majority of a key's replicas answered.
var ErrNoQuorum = errors.New("too few replicas answered")

// Version returns a version for a new write: the clock in nanoseconds, but
// always above the last one issued here, so this writer's writes are
// ordered even if its clock steps back.
func (r *Records) Version() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := max(uint64(r.cfg.Now().UnixNano()), r.last+1)
	r.last = v
	return v
}

// quorum is the number of answers a majority of n replicas makes.
func quorum(n int) int { return n/2 + 1 }

// Quorum says how widely a record is kept, in the terms of Dynamo: on the
// first N live peers clockwise from its key, a write succeeding once W of
// them stored it and a read once R of them answered. A zero field takes
// the default: N = Replicas, W = R = a majority of N.
type Quorum struct {
	N, W, R int
}

func (r *Records) fill(q Quorum) Quorum {
	if q.N == 0 {
		q.N = r.cfg.Replicas
	}
	if q.W == 0 {
		q.W = quorum(q.N)
	}
	if q.R == 0 {
		q.R = quorum(q.N)
	}
	return q
}

// need is how many of the n peers found must succeed for a quorum of want:
// a ring smaller than N can only store on the peers it has.
func need(want, n int) int { return min(want, n) }

// Put merges entries into the record key on its replica set. An entry with
// a zero Version gets Version(); one with a zero Writer gets the configured
// writer. It returns nil once a majority of the replicas stored the batch.
//
// Errors: store.ErrInvalid for a bad entry (nothing is written);
// ErrNoQuorum, joined with each replica's failure, when fewer than a
// majority stored it (some may have: a later write or read repair settles
// it); the context's error.
func (r *Records) Put(ctx context.Context, key store.Key, entries ...store.Entry) error {
	return r.PutWith(ctx, key, Quorum{}, entries...)
}

// PutWith is Put on the replica set and write quorum q says.
func (r *Records) PutWith(ctx context.Context, key store.Key, q Quorum, entries ...store.Entry) error {
	q = r.fill(q)
	es := slices.Clone(entries)
	for i := range es {
		if es[i].Version == 0 {
			es[i].Version = r.Version()
		}
		if es[i].Writer == ([32]byte{}) {
			es[i].Writer = r.cfg.Writer
		}
		if err := es[i].Validate(); err != nil {
			return fmt.Errorf("ring: put record %s: %w", key, err)
		}
	}
	peers, err := r.lookup(ctx, key, q.N)
	if err != nil {
		return fmt.Errorf("ring: put record %s: %w", key, err)
	}
	errs := r.each(ctx, peers, func(ctx context.Context, _ int, b Backend) error {
		_, err := b.MergeRecord(ctx, key, es)
		return err
	})
	if ok, w := countNil(errs), need(q.W, len(peers)); ok < w {
		return fmt.Errorf("ring: put record %s: %d of %d replicas stored it, %d needed: %w", key, ok, len(peers), w, errors.Join(append([]error{ErrNoQuorum}, errs...)...))
	}
	return nil
}

// Delete removes the named entries of record key by writing tombstones that
// last TombstoneTTL. Errors as Put.
func (r *Records) Delete(ctx context.Context, key store.Key, names ...string) error {
	return r.DeleteWith(ctx, key, Quorum{}, names...)
}

// DeleteWith is Delete on the replica set and write quorum q says.
func (r *Records) DeleteWith(ctx context.Context, key store.Key, q Quorum, names ...string) error {
	es := make([]store.Entry, len(names))
	exp := r.cfg.Now().Add(r.cfg.TombstoneTTL)
	for i, n := range names {
		es[i] = store.Entry{Name: n, Deleted: true, Expires: exp}
	}
	return r.PutWith(ctx, key, q, es...)
}

// Get returns the live entries of record key, sorted by name, as merged
// from its replicas. Replicas that were behind get the merged state back.
//
// Errors: store.ErrNotFound when a majority answered and none holds a live
// entry; ErrNoQuorum, joined with each replica's failure, when fewer than a
// majority answered; the context's error.
func (r *Records) Get(ctx context.Context, key store.Key) ([]store.Entry, error) {
	return r.GetWith(ctx, key, Quorum{})
}

// GetWith is Get from the replica set and read quorum q says.
func (r *Records) GetWith(ctx context.Context, key store.Key, q Quorum) ([]store.Entry, error) {
	state, err := r.StateWith(ctx, key, q)
	if err != nil {
		return nil, err
	}
	now := r.cfg.Now()
	live := slices.DeleteFunc(state, func(e store.Entry) bool {
		return e.Deleted || (!e.Expires.IsZero() && !e.Expires.After(now))
	})
	if len(live) == 0 {
		return nil, fmt.Errorf("ring: get record %s: %w", key, store.ErrNotFound)
	}
	return live, nil
}

// State is Get with tombstones: every unexpired entry, merged from the
// replicas and read-repaired. An empty record is an empty state, not
// store.ErrNotFound.
func (r *Records) State(ctx context.Context, key store.Key) ([]store.Entry, error) {
	return r.StateWith(ctx, key, Quorum{})
}

// StateWith is State from the replica set and read quorum q says. It
// returns as soon as R replicas have answered: a slow replica does not slow
// a read it is not needed for.
func (r *Records) StateWith(ctx context.Context, key store.Key, q Quorum) ([]store.Entry, error) {
	return r.StateUntil(ctx, key, q, nil)
}

// StateUntil is StateWith that stops asking as soon as the entries merged so
// far satisfy enough (for instance, they hold a manifest, which needs no
// quorum), or every replica has answered. R still bounds the answers that
// make the read succeed when enough never holds.
//
// A read that cannot reach R replicas looks the replica set up again, a
// few times with back-off: right after peers die, lookups may still name
// them until the failure detector has noticed. (A lookup that fails
// outright is retried by lookup itself.)
func (r *Records) StateUntil(ctx context.Context, key store.Key, q Quorum, enough func([]store.Entry) bool) ([]store.Entry, error) {
	q = r.fill(q)
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		peers, err := r.lookup(ctx, key, q.N) // retries a failed lookup itself
		if err != nil {
			return nil, fmt.Errorf("ring: get record %s: %w", key, err)
		}
		states, errs, merged := r.gather(ctx, key, peers, need(q.R, len(peers)), enough)
		ok := countNil(errs)
		if ok >= need(q.R, len(peers)) || (enough != nil && ok > 0 && enough(merged)) {
			r.readRepair(ctx, key, peers, states, errs, merged)
			return merged, nil
		}
		if attempt == readAttempts-1 {
			return nil, fmt.Errorf("ring: get record %s: %d of %d replicas answered, %d needed: %w", key, ok, len(peers), need(q.R, len(peers)), errors.Join(append([]error{ErrNoQuorum}, errs...)...))
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("ring: get record %s: %w", key, err)
		}
		wait *= 2
	}
}

// readAttempts bounds the lookups one read makes of a record's replicas.
const readAttempts = 3

// errNotAsked marks a replica whose answer was not waited for.
var errNotAsked = errors.New("not needed for this read")

// gather asks every peer for the record's state at once and returns when
// need of them have answered (and enough, if given, holds for what they
// said) or all have: the slower calls are cancelled.
func (r *Records) gather(ctx context.Context, key store.Key, peers []dht.Peer, need int, enough func([]store.Entry) bool) (states [][]store.Entry, errs []error, merged []store.Entry) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i   int
		es  []store.Entry
		err error
	}
	answers := make(chan answer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
			defer cancel()
			es, err := r.cfg.Dial(p).GetRecordState(cctx, key)
			if errors.Is(err, store.ErrNotFound) {
				err = nil // an empty replica is an answer
			}
			if err != nil {
				err = fmt.Errorf("replica %s: %w", p, err)
			}
			answers <- answer{i, es, err}
		})
	}
	states, errs = make([][]store.Entry, len(peers)), make([]error, len(peers))
	for i := range errs {
		errs[i] = errNotAsked
	}
	ok := 0
	for range peers {
		a := <-answers
		states[a.i], errs[a.i] = a.es, a.err
		if a.err != nil {
			continue
		}
		ok++
		merged = mergeStates(states)
		if enough != nil && enough(merged) || enough == nil && ok >= need {
			break
		}
	}
	cancel()
	wg.Wait()
	return states, errs, mergeStates(states)
}

// readRepair gives each replica that answered what it lacked of merged.
func (r *Records) readRepair(ctx context.Context, key store.Key, peers []dht.Peer, states [][]store.Entry, errs []error, merged []store.Entry) {
	var behind []dht.Peer
	var patches [][]store.Entry
	for i, st := range states {
		if errs[i] != nil {
			continue
		}
		if p := missingFrom(st, merged); len(p) > 0 {
			behind = append(behind, peers[i])
			patches = append(patches, p)
		}
	}
	if len(behind) == 0 {
		return
	}
	r.each(ctx, behind, func(ctx context.Context, i int, b Backend) error {
		_, err := b.MergeRecord(ctx, key, patches[i])
		if err != nil {
			r.cfg.Logger.Warn("read repair failed", "record", key, "peer", behind[i], "err", err)
		} else {
			r.cfg.Logger.Debug("read repair", "record", key, "peer", behind[i], "entries", len(patches[i]))
		}
		return err
	})
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Push merges entries, as they are (versions and writers kept), into record
// key on its first n replicas (zero: Replicas): the hand-off of a record to
// peers that became its replicas. It returns how many replicas stored them.
func (r *Records) Push(ctx context.Context, key store.Key, n int, entries []store.Entry) (int, error) {
	peers, err := r.lookup(ctx, key, n)
	if err != nil {
		return 0, fmt.Errorf("ring: push record %s: %w", key, err)
	}
	errs := r.each(ctx, peers, func(ctx context.Context, _ int, b Backend) error {
		_, err := b.MergeRecord(ctx, key, entries)
		return err
	})
	return countNil(errs), errors.Join(errs...)
}

// Replicas returns the replica set of key: the first n live peers
// clockwise from it (zero: Replicas).
func (r *Records) Replicas(ctx context.Context, key store.Key, n int) ([]dht.Peer, error) {
	return r.lookup(ctx, key, n)
}

func (r *Records) lookup(ctx context.Context, key store.Key, n int) ([]dht.Peer, error) {
	if n == 0 {
		n = r.cfg.Replicas
	}
	peers, err := lookupRetry(ctx, r.cfg.Locator, keyID(key), n)
	if err != nil {
		return nil, fmt.Errorf("look up replicas: %w", err)
	}
	return peers, nil
}

// lookupRetry looks key up, and again with back-off when the lookup fails:
// while the ring churns (peers joining, or just killed and not yet
// noticed) a lookup can fail where the next one succeeds.
func lookupRetry(ctx context.Context, l Locator, key dht.ID, n int) ([]dht.Peer, error) {
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		peers, _, err := l.Lookup(ctx, key, n)
		if err == nil && len(peers) == 0 {
			err = dht.ErrNoPeers
		}
		if err == nil || attempt == readAttempts-1 || ctx.Err() != nil {
			return peers, err
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		wait *= 2
	}
}

// each calls f with the index and store of every peer at once, each call
// bounded by CallTimeout, and returns each peer's error in peer order.
// The last call runs on the caller's goroutine, which would only wait:
// a new goroutine grows its stack afresh for each replica write.
func (r *Records) each(ctx context.Context, peers []dht.Peer, f func(context.Context, int, Backend) error) []error {
	errs := make([]error, len(peers))
	// One bound for all the calls, which start together; none when the
	// caller's own ends first (a REGISTER's write: a timer and a context
	// fewer per replica, on the ring's hottest path).
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > r.cfg.CallTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.CallTimeout)
		defer cancel()
	}
	call := func(i int, p dht.Peer) {
		if err := f(ctx, i, r.cfg.Dial(p)); err != nil {
			errs[i] = fmt.Errorf("replica %s: %w", p, err)
		}
	}
	var wg sync.WaitGroup
	for i, p := range peers[:max(len(peers)-1, 0)] {
		wg.Go(func() { call(i, p) })
	}
	if n := len(peers); n > 0 {
		call(n-1, peers[n-1])
	}
	wg.Wait()
	return errs
}

func countNil(errs []error) int {
	n := 0
	for _, e := range errs {
		if e == nil {
			n++
		}
	}
	return n
}

// mergeStates merges replica states entry by entry, sorted by name.
func mergeStates(states [][]store.Entry) []store.Entry {
	byName := map[string]store.Entry{}
	for _, st := range states {
		for _, e := range st {
			if old, ok := byName[e.Name]; ok {
				e = store.Merge(old, e)
			}
			byName[e.Name] = e
		}
	}
	out := make([]store.Entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b store.Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// missingFrom returns the entries of merged that state does not hold as is.
func missingFrom(state, merged []store.Entry) []store.Entry {
	have := make(map[string]store.Entry, len(state))
	for _, e := range state {
		have[e.Name] = e
	}
	var out []store.Entry
	for _, e := range merged {
		if h, ok := have[e.Name]; !ok || !h.Equal(e) {
			out = append(out, e)
		}
	}
	return out
}
