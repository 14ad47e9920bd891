package coding

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// ErrTooFewShards is matched (errors.Is) by every *ShardError: a segment
// could not be rebuilt because fewer than Needed good shards arrived.
var ErrTooFewShards = errors.New("too few shards")

// ErrCorruptShard means a shard's bytes do not match the manifest's hash: the
// peer that returned it is lying or its copy is damaged.
var ErrCorruptShard = errors.New("shard does not match its hash")

// ErrDecrypt means a segment rebuilt from shards that match the manifest
// failed authentication: the cap's key is not the one the object was sealed
// with.
var ErrDecrypt = errors.New("segment failed authentication")

// ShardError says why a segment could not be rebuilt: which shards never
// arrived and which arrived but did not match their hash.
type ShardError struct {
	Segment int
	Needed  int   // shards needed to rebuild the segment
	Good    int   // shards that arrived and matched
	Missing []int // shard indexes that never arrived
	Corrupt []int // shard indexes that arrived and did not match
}

func (e *ShardError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "segment %d: %d good shards of %d needed", e.Segment, e.Good, e.Needed)
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, "; missing %v", e.Missing)
	}
	if len(e.Corrupt) > 0 {
		fmt.Fprintf(&b, "; corrupt %v", e.Corrupt)
	}
	return b.String()
}

// Is reports whether target is ErrTooFewShards.
func (e *ShardError) Is(target error) bool { return target == ErrTooFewShards }

// Collector gathers the shards of one segment as they arrive from peers,
// keeping those that match the manifest. It is safe for concurrent use, so
// a fetcher can offer each answer from the goroutine that received it and
// cancel the rest once Offer reports enough.
type Collector struct {
	m       *Manifest
	segment int

	mu      sync.Mutex
	shards  [][]byte // nil where not (yet) good
	corrupt []int
	good    int
}

// Collect returns an empty Collector for segment s of the object m describes.
func (m *Manifest) Collect(s int) *Collector {
	return &Collector{m: m, segment: s, shards: make([][]byte, m.Scheme.Total)}
}

// Segment returns the index of the segment being collected.
func (c *Collector) Segment() int { return c.segment }

// Offer gives the collector shard i. It reports whether Needed good shards
// are now held. A shard that does not match its hash (or an index out of
// range) is not kept and yields an error wrapping ErrCorruptShard, which the
// fetcher logs against the peer that sent it. Offers after enough, and
// repeats, are ignored. A kept shard is not copied: the caller must not
// modify data afterwards.
func (c *Collector) Offer(i int, data []byte) (enough bool, err error) {
	ok := c.m.CheckShard(c.segment, i, data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		if i >= 0 && i < len(c.shards) && !slices.Contains(c.corrupt, i) {
			c.corrupt = append(c.corrupt, i)
		}
		return c.good >= c.m.Scheme.Needed, fmt.Errorf("%w: segment %d shard %d", ErrCorruptShard, c.segment, i)
	}
	if c.good < c.m.Scheme.Needed && c.shards[i] == nil {
		c.shards[i] = data
		c.good++
	}
	return c.good >= c.m.Scheme.Needed, nil
}

// Enough reports whether Needed good shards are held.
func (c *Collector) Enough() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.good >= c.m.Scheme.Needed
}

// Err returns nil when enough good shards are held, else a *ShardError.
func (c *Collector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.good >= c.m.Scheme.Needed {
		return nil
	}
	e := &ShardError{Segment: c.segment, Needed: c.m.Scheme.Needed, Good: c.good, Corrupt: slices.Sorted(slices.Values(c.corrupt))}
	for i, sh := range c.shards {
		if sh == nil && !slices.Contains(c.corrupt, i) {
			e.Missing = append(e.Missing, i)
		}
	}
	return e
}

// Fetch gathers the shards of one segment: it asks the peers that hold them,
// offers each answer to c, and returns once c reports enough (cancelling the
// requests still out) or no more can come. It returns an error only when it
// could not ask at all; shards that failed are simply not offered.
type Fetch func(ctx context.Context, c *Collector) error

// Decoder rebuilds an object from its shards.
type Decoder struct {
	m       *Manifest
	c       *codec
	workers int
}

// DefaultFetchWorkers is how many segments Decode fetches at once when not
// told otherwise: fetching waits on the network, so it runs ahead of the
// CPU-bound decoding.
var defaultDecodeWorkers = max(4, runtime.GOMAXPROCS(0))

// NewDecoder returns a Decoder for the object m describes, sealed with key.
// workers is how many segments are fetched and decoded at once; zero means
// max(4, GOMAXPROCS). Memory held is about workers+2 segments.
func NewDecoder(key Key, m *Manifest, workers int) (*Decoder, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("coding: decoder: %w", err)
	}
	c, err := newCodec(key, m.Scheme)
	if err != nil {
		return nil, fmt.Errorf("coding: decoder: %w", err)
	}
	if workers <= 0 {
		workers = defaultDecodeWorkers
	}
	return &Decoder{m: m, c: c, workers: workers}, nil
}

// Manifest returns the manifest the decoder was made with.
func (d *Decoder) Manifest() *Manifest { return d.m }

// DecodeSegment rebuilds the plaintext of the segment c collected, writing
// it to dst when it fits (dst's capacity is used as scratch; pass nil to
// allocate). Errors: a *ShardError when c has too few good shards;
// ErrDecrypt when the rebuilt segment fails authentication.
func (d *Decoder) DecodeSegment(c *Collector, dst []byte) ([]byte, error) {
	if err := c.Err(); err != nil {
		return nil, err
	}
	s := c.segment
	k := d.m.Scheme.Needed
	c.mu.Lock()
	shards := slices.Clone(c.shards)
	c.mu.Unlock()
	// Lay the data shards out in dst, where they form the sealed segment;
	// missing ones are rebuilt in place (ReconstructData fills zero-length
	// shards that have the capacity), so nothing is copied twice.
	ss := d.m.ShardSize(s)
	if cap(dst) < k*ss {
		dst = make([]byte, 0, k*ss)
	}
	buf := dst[:k*ss]
	missing := false
	for i := range k {
		at := buf[i*ss : (i+1)*ss : (i+1)*ss]
		if shards[i] == nil {
			shards[i], missing = at[:0], true
			continue
		}
		copy(at, shards[i])
		shards[i] = at
	}
	if missing {
		if err := d.c.rs.ReconstructData(shards); err != nil {
			return nil, fmt.Errorf("coding: segment %d: reconstruct: %w", s, err)
		}
	}
	sealedLen := d.m.SegmentLen(s) + tagSize
	sealed := buf
	plain, err := d.c.aead.Open(sealed[:0], nonce(s), sealed[:sealedLen], segmentAAD)
	if err != nil {
		return nil, fmt.Errorf("coding: segment %d: %w (is the cap's key right?)", s, ErrDecrypt)
	}
	return plain, nil
}

// Decode writes the object to w, segment after segment, calling fetch for
// each. Segments are fetched and decoded ahead of the writer in a pipeline,
// so that the first bytes go out as soon as the first segment is rebuilt and
// memory stays bounded by a few segments.
//
// Errors: a *ShardError (errors.Is ErrTooFewShards) naming the segment and
// its missing and corrupt shards; ErrDecrypt; an error from fetch or w,
// wrapped. Bytes before the failing segment have been written.
func (d *Decoder) Decode(ctx context.Context, w io.Writer, fetch Fetch) error {
	segs := len(d.m.ShardHashes)
	pool := newBufferPool(d.m.Scheme.Needed*shardSize(d.m.SegmentSize, d.m.Scheme.Needed), d.workers+2)
	defer pool.close()
	type job struct {
		c   *Collector
		buf []byte
	}
	s := 0
	next := func(ctx context.Context) (job, bool, error) {
		if s == segs {
			return job{}, false, nil
		}
		buf, err := pool.get(ctx)
		if err != nil {
			return job{}, false, err
		}
		s++
		return job{d.m.Collect(s - 1), buf}, true, nil
	}
	type result struct {
		plain, buf []byte
	}
	work := func(ctx context.Context, j job) (result, error) {
		ferr := fetch(ctx, j.c)
		if !j.c.Enough() {
			pool.put(j.buf)
			if ferr != nil {
				return result{}, fmt.Errorf("coding: decode: fetch segment %d: %w", j.c.segment, errors.Join(ferr, j.c.Err()))
			}
			return result{}, fmt.Errorf("coding: decode: %w", j.c.Err())
		}
		plain, err := d.DecodeSegment(j.c, j.buf[:0])
		if err != nil {
			pool.put(j.buf)
			return result{}, fmt.Errorf("coding: decode: %w", err)
		}
		return result{plain, j.buf}, nil
	}
	done := func(r result) error {
		defer pool.put(r.buf)
		if _, err := w.Write(r.plain); err != nil {
			return fmt.Errorf("coding: decode: write: %w", err)
		}
		return nil
	}
	return ordered(ctx, d.workers, next, work, done)
}

// Rebuild returns all Total shards of the segment c collected, rebuilding
// the missing ones (data or parity) from the good ones. It needs no key:
// shards are coded ciphertext, so a repairing peer never sees plaintext.
// Every rebuilt shard is checked against the manifest before it is returned.
// Errors: a *ShardError when c has too few good shards; ErrCorruptShard if a
// rebuilt shard does not match (the manifest itself is inconsistent).
func (c *Collector) Rebuild() ([][]byte, error) {
	if err := c.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	shards := slices.Clone(c.shards)
	c.mu.Unlock()
	s := c.m.Scheme
	if slices.ContainsFunc(shards, func(b []byte) bool { return b == nil }) {
		rs, err := reedsolomon.New(s.Needed, s.Parity())
		if err != nil {
			return nil, fmt.Errorf("coding: segment %d: rebuild: %w", c.segment, err)
		}
		if err := rs.Reconstruct(shards); err != nil {
			return nil, fmt.Errorf("coding: segment %d: rebuild: %w", c.segment, err)
		}
	}
	for i, sh := range shards {
		if !c.m.CheckShard(c.segment, i, sh) {
			return nil, fmt.Errorf("coding: segment %d: rebuilt %w: shard %d", c.segment, ErrCorruptShard, i)
		}
	}
	return shards, nil
}
