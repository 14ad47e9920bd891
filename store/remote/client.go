package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// Store is another peer's store, reached over the ring transport. It keeps
// the store contract: errors the peer's store returned match the same
// sentinels (store.ErrNotFound, …) with errors.Is; failing to reach the peer
// wraps the transport's errors (dht.ErrUnreachable, …).
type Store struct {
	c    dht.Caller
	peer dht.Peer
	q    *mergeQueue // nil: every merge is a call of its own
}

var (
	_ store.Shards      = (*Store)(nil)
	_ store.Records     = (*Store)(nil)
	_ store.BatchMerger = (*Store)(nil)
)

// New returns the store of peer, called through c.
func New(c dht.Caller, peer dht.Peer) *Store { return &Store{c: c, peer: peer} }

// Pool hands out the stores of other peers, called through one caller,
// and batches the record merges sent to each peer: while a merge to a
// peer is in flight, the merges that follow wait and go together in the
// next call (store.Coalescer), which the peer writes in one transaction;
// while merges to a peer come at least two per store.MergeLinger, a merge
// that finds no call in flight waits that long for others to go with it.
// Under load a replica write then costs a fraction of a round trip; an
// idle peer sees each merge at once, as without a Pool.
//
// A Pool is safe for concurrent use and starts no goroutines.
type Pool struct {
	c dht.Caller

	mu     sync.Mutex
	queues map[dht.Peer]*mergeQueue
}

// mergeQueue is one peer's batching state.
type mergeQueue struct {
	co       *store.Coalescer
	oldUntil atomic.Int64 // unix ns until which the peer is taken to lack mergemany
}

// maxPoolPeers bounds the peers a Pool keeps batching state for; past it,
// all of it is forgotten (a cache: calls in flight keep theirs).
const maxPoolPeers = 4096

// oldPeerMemory is how long a peer that did not know mergemany is sent
// single merges before it is asked again (it may have been upgraded).
const oldPeerMemory = 10 * time.Minute

func (q *mergeQueue) old() bool { return time.Now().UnixNano() < q.oldUntil.Load() }
func (q *mergeQueue) setOld()   { q.oldUntil.Store(time.Now().Add(oldPeerMemory).UnixNano()) }

// NewPool returns a Pool calling through c.
func NewPool(c dht.Caller) *Pool { return &Pool{c: c, queues: map[dht.Peer]*mergeQueue{}} }

// Store returns the store of peer.
func (p *Pool) Store(peer dht.Peer) *Store {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[peer]
	if q == nil {
		if len(p.queues) >= maxPoolPeers {
			clear(p.queues)
		}
		q = &mergeQueue{}
		q.co = store.NewCoalescer(1, (&Store{c: p.c, peer: peer, q: q}).MergeRecords)
		q.co.SetLinger(store.MergeLinger)
		p.queues[peer] = q
	}
	return &Store{c: p.c, peer: peer, q: q}
}

// Peer returns the peer whose store this is.
func (s *Store) Peer() dht.Peer { return s.peer }

func (s *Store) call(ctx context.Context, method string, body []byte) ([]byte, error) {
	b, err := s.c.Call(ctx, s.peer, method, body)
	if err != nil {
		return nil, err
	}
	return parseAnswer(s.peer.String(), b)
}

// PutShard stores a shard on the peer.
func (s *Store) PutShard(ctx context.Context, id store.ShardID, hash coding.Hash, data []byte) error {
	if len(data) > store.MaxShardSize {
		return fmt.Errorf("remote: put shard %s: %w: %d bytes, the limit is %d", id, store.ErrInvalid, len(data), store.MaxShardSize)
	}
	body := make([]byte, 0, 38+32+4+len(data))
	body = appendShardID(body, id)
	body = append(body, hash[:]...)
	body = appendBlob(body, data)
	if _, err := s.call(ctx, methodPutShard, body); err != nil {
		return fmt.Errorf("remote: put shard %s on %s: %w", id, s.peer, err)
	}
	return nil
}

// GetShard reads a shard from the peer. The hash returned is the one the
// peer claims; a reader checks the data against the manifest, not this.
func (s *Store) GetShard(ctx context.Context, id store.ShardID) ([]byte, coding.Hash, error) {
	b, err := s.call(ctx, methodGetShard, appendShardID(nil, id))
	if err != nil {
		return nil, coding.Hash{}, fmt.Errorf("remote: get shard %s on %s: %w", id, s.peer, err)
	}
	if len(b) < coding.HashSize {
		return nil, coding.Hash{}, fmt.Errorf("remote: get shard %s on %s: %w: answer cut short", id, s.peer, errMalformed)
	}
	return b[coding.HashSize:], coding.Hash(b[:coding.HashSize]), nil
}

// FindShard asks the peer for shard id or, when it does not hold that one,
// another shard of the same segment, in one round trip (store.ShardFinder).
// A peer of an older version, which does not know the call, is asked with
// GetShard and ListShards instead.
func (s *Store) FindShard(ctx context.Context, id store.ShardID) (store.ShardID, []byte, coding.Hash, error) {
	b, err := s.call(ctx, methodFindShard, appendShardID(nil, id))
	if errors.Is(err, dht.ErrUnknownMethod) {
		return store.FindShardSlowly(ctx, s, id)
	}
	if err != nil {
		return store.ShardID{}, nil, coding.Hash{}, fmt.Errorf("remote: find shard %s on %s: %w", id, s.peer, err)
	}
	r := reader{b: b}
	found := r.shardID()
	hash := r.b32("shard hash")
	if r.err != nil || found.Index != id.Index || found.Segment != id.Segment {
		return store.ShardID{}, nil, coding.Hash{}, fmt.Errorf("remote: find shard %s on %s: %w: answer malformed or for another segment", id, s.peer, errMalformed)
	}
	return found, r.b, hash, nil
}

// DeleteShard removes a shard from the peer.
func (s *Store) DeleteShard(ctx context.Context, id store.ShardID) error {
	if _, err := s.call(ctx, methodDeleteShard, appendShardID(nil, id)); err != nil {
		return fmt.Errorf("remote: delete shard %s on %s: %w", id, s.peer, err)
	}
	return nil
}

// ListShards lists the peer's shards of one storage index, a page at a time.
func (s *Store) ListShards(ctx context.Context, index coding.StorageIndex) iter.Seq2[store.ShardInfo, error] {
	return s.list(ctx, false, index)
}

// ListAllShards lists all the peer's shards, a page at a time.
func (s *Store) ListAllShards(ctx context.Context) iter.Seq2[store.ShardInfo, error] {
	return s.list(ctx, true, coding.StorageIndex{})
}

func (s *Store) list(ctx context.Context, all bool, index coding.StorageIndex) iter.Seq2[store.ShardInfo, error] {
	return func(yield func(store.ShardInfo, error) bool) {
		var after store.ShardID
		hasAfter := false
		for {
			body := []byte{boolByte(all)}
			body = append(body, index[:]...)
			body = append(body, boolByte(hasAfter))
			body = appendShardID(body, after)
			b, err := s.call(ctx, methodListShards, body)
			if err != nil {
				yield(store.ShardInfo{}, fmt.Errorf("remote: list shards on %s: %w", s.peer, err))
				return
			}
			r := reader{b: b}
			n := r.u32("shard count")
			if n > shardPage {
				r.err = fmt.Errorf("%w: %d shards in one page", errMalformed, n)
			}
			infos := make([]store.ShardInfo, 0, min(n, shardPage))
			for range n {
				if r.err != nil {
					break
				}
				infos = append(infos, r.info())
			}
			more := r.u8("more flag") == 1
			if err := r.done(); err != nil {
				yield(store.ShardInfo{}, fmt.Errorf("remote: list shards on %s: %w", s.peer, err))
				return
			}
			for _, in := range infos {
				if !yield(in, nil) {
					return
				}
			}
			if !more || len(infos) == 0 {
				return
			}
			after, hasAfter = infos[len(infos)-1].ID, true
		}
	}
}

// MergeRecord merges entries into a record on the peer. A Store from a
// Pool sends merges that wait for one another in batches (MergeRecords).
func (s *Store) MergeRecord(ctx context.Context, key store.Key, entries []store.Entry) (int, error) {
	if s.q != nil && !s.q.old() {
		return s.q.co.MergeRecord(ctx, key, entries)
	}
	return s.mergeOne(ctx, key, entries)
}

func (s *Store) mergeOne(ctx context.Context, key store.Key, entries []store.Entry) (int, error) {
	body := appendEntries(append([]byte(nil), key[:]...), entries)
	b, err := s.call(ctx, methodMerge, body)
	if err != nil {
		return 0, fmt.Errorf("remote: merge record %s on %s: %w", key, s.peer, err)
	}
	n, err := mergeCount(b)
	if err != nil {
		return 0, fmt.Errorf("remote: merge record %s on %s: %w", key, s.peer, err)
	}
	return n, nil
}

// mergeCount reads the answer of a merge: how many entries it wrote.
func mergeCount(b []byte) (int, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("%w: bad count", errMalformed)
	}
	return int(binary.BigEndian.Uint32(b)), nil
}

// MergeRecords implements store.BatchMerger: the merges go to the peer in
// one call, which its store writes in one transaction. A peer of an older
// version, which does not know the call, gets them one at a time.
func (s *Store) MergeRecords(ctx context.Context, ms []store.RecordMerge) []store.MergeResult {
	if len(ms) == 1 {
		n, err := s.mergeOne(ctx, ms[0].Key, ms[0].Entries)
		return []store.MergeResult{{Written: n, Err: err}}
	}
	rs := make([]store.MergeResult, len(ms))
	body := binary.BigEndian.AppendUint32(nil, uint32(len(ms)))
	for _, m := range ms {
		body = appendEntries(append(body, m.Key[:]...), m.Entries)
	}
	b, err := s.call(ctx, methodMergeMany, body)
	if errors.Is(err, dht.ErrUnknownMethod) {
		if s.q != nil {
			s.q.setOld()
		}
		for i, m := range ms {
			rs[i].Written, rs[i].Err = s.mergeOne(ctx, m.Key, m.Entries)
		}
		return rs
	}
	r := reader{b: b}
	if err == nil {
		if n := r.u32("merge count"); r.err == nil && int(n) != len(ms) {
			r.err = fmt.Errorf("%w: %d results for %d merges", errMalformed, n, len(ms))
		}
		for i := range ms {
			if r.err != nil {
				break
			}
			a, aerr := parseAnswer(s.peer.String(), r.blob(1<<20, "merge result"))
			switch {
			case r.err != nil:
			case aerr != nil:
				rs[i].Err = aerr
			default:
				rs[i].Written, r.err = mergeCount(a)
			}
		}
		err = r.done()
	}
	for i, m := range ms {
		if err != nil {
			rs[i] = store.MergeResult{Err: err}
		}
		if rs[i].Err != nil {
			rs[i].Err = fmt.Errorf("remote: merge record %s on %s: %w", m.Key, s.peer, rs[i].Err)
		}
	}
	return rs
}

// GetRecord reads the live entries of a record on the peer.
func (s *Store) GetRecord(ctx context.Context, key store.Key) ([]store.Entry, error) {
	return s.getRecord(ctx, key, false)
}

// GetRecordState reads every unexpired entry, tombstones included.
func (s *Store) GetRecordState(ctx context.Context, key store.Key) ([]store.Entry, error) {
	return s.getRecord(ctx, key, true)
}

func (s *Store) getRecord(ctx context.Context, key store.Key, state bool) ([]store.Entry, error) {
	b, err := s.call(ctx, methodGetRecord, append(append([]byte(nil), key[:]...), boolByte(state)))
	if err != nil {
		return nil, fmt.Errorf("remote: get record %s on %s: %w", key, s.peer, err)
	}
	r := reader{b: b}
	es := r.entries(maxRecordEntries)
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("remote: get record %s on %s: %w", key, s.peer, err)
	}
	return es, nil
}

// maxRecordEntries bounds the entries one answer may carry; the transport's
// message limit bounds the bytes.
const maxRecordEntries = 1 << 20

// RecordKeys lists the peer's record keys ≥ from, a page at a time.
func (s *Store) RecordKeys(ctx context.Context, from store.Key) iter.Seq2[store.Key, error] {
	return func(yield func(store.Key, error) bool) {
		for {
			b, err := s.call(ctx, methodRecordKeys, from[:])
			if err != nil {
				yield(store.Key{}, fmt.Errorf("remote: list record keys on %s: %w", s.peer, err))
				return
			}
			r := reader{b: b}
			n := r.u32("key count")
			if n > keyPage {
				r.err = fmt.Errorf("%w: %d keys in one page", errMalformed, n)
			}
			keys := make([]store.Key, 0, min(n, keyPage))
			for range n {
				if r.err != nil {
					break
				}
				keys = append(keys, store.Key(r.b32("record key")))
			}
			more := r.u8("more flag") == 1
			if err := r.done(); err != nil {
				yield(store.Key{}, fmt.Errorf("remote: list record keys on %s: %w", s.peer, err))
				return
			}
			for _, k := range keys {
				if !yield(k, nil) {
					return
				}
			}
			if !more || len(keys) == 0 {
				return
			}
			next, ok := successor(keys[len(keys)-1])
			if !ok {
				return
			}
			from = next
		}
	}
}

// successor returns the key right after k, or false if k is the last key.
func successor(k store.Key) (store.Key, bool) {
	for i := len(k) - 1; i >= 0; i-- {
		k[i]++
		if k[i] != 0 {
			return k, true
		}
	}
	return k, false
}
