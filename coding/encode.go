package coding

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/reedsolomon"
)

// DefaultSegmentSize is 1 MiB. A 60 s G.711 voicemail (480 kB) is one
// segment, so it is one placement and one round of fetches; a 1 GiB
// recording is 1,024 segments spread over the whole ring. With 4-of-6 a
// shard is 256 KiB, large enough that per-shard costs (an RPC, a hash, a
// badger value) are small against the bytes moved, small enough that a
// reader holds only a few MiB per object.
const DefaultSegmentSize = 1 << 20

// tagSize is the GCM tag appended to every sealed segment.
const tagSize = 16

// segmentAAD binds every sealed segment to this format.
var segmentAAD = []byte("voicering segment v1")

// Params says how to code one object.
type Params struct {
	Scheme      Scheme // zero value: DefaultScheme
	SegmentSize int    // plaintext bytes per segment; zero: DefaultSegmentSize
	ContentType string // MIME type recorded in the manifest; may be empty
	// Workers is how many segments are coded at once; zero means
	// runtime.GOMAXPROCS(0). Memory held is about Workers+2 segments'
	// shards, whatever the object size.
	Workers int
}

func (p Params) withDefaults() (Params, error) {
	if p.Scheme == (Scheme{}) {
		p.Scheme = DefaultScheme
	}
	if p.SegmentSize == 0 {
		p.SegmentSize = DefaultSegmentSize
	}
	if p.Workers <= 0 {
		p.Workers = runtime.GOMAXPROCS(0)
	}
	if err := p.Scheme.Validate(); err != nil {
		return p, err
	}
	if p.SegmentSize < MinSegmentSize || p.SegmentSize > MaxSegmentSize {
		return p, fmt.Errorf("segment size %d is outside [%d, %d]", p.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	if err := checkContentType(p.ContentType); err != nil {
		return p, err
	}
	return p, nil
}

// Segment is one coded segment as Encode hands it out.
type Segment struct {
	Index  int
	Shards [][]byte // Total shards of equal size
	Hashes []Hash   // Hashes[i] is HashOf(Shards[i])
}

// codec holds what sealing and coding need for one key and scheme; it is
// safe for concurrent use.
type codec struct {
	scheme Scheme
	aead   cipher.AEAD
	rs     reedsolomon.Encoder // nil when the scheme has no parity
}

func newCodec(key Key, s Scheme) (*codec, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	c := &codec{scheme: s, aead: aead}
	if s.Parity() > 0 {
		if c.rs, err = reedsolomon.New(s.Needed, s.Parity()); err != nil {
			return nil, fmt.Errorf("reed-solomon %s: %w", s, err)
		}
	}
	return c, nil
}

// nonce returns the GCM nonce of segment s: its index, big-endian. A key
// seals one object and each index once, so no nonce repeats under a key.
func nonce(s int) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], uint64(s))
	return n[:]
}

// seal turns the n plaintext bytes at the start of buf into the Total
// shards of segment s, in place: buf must hold Total shards of the
// segment's shard size. The shards alias buf.
func (c *codec) seal(s int, buf []byte, n int) *Segment {
	k, total := c.scheme.Needed, c.scheme.Total
	ss := shardSize(n, k)
	sealed := c.aead.Seal(buf[:0], nonce(s), buf[:n], segmentAAD)
	clear(buf[len(sealed) : k*ss]) // zero padding of the last data shard
	seg := &Segment{Index: s, Shards: make([][]byte, total), Hashes: make([]Hash, total)}
	for i := range seg.Shards {
		seg.Shards[i] = buf[i*ss : (i+1)*ss : (i+1)*ss]
	}
	if c.rs != nil {
		// Shards are equal-sized and non-empty (a tag is 16 bytes), the
		// only conditions under which Encode fails.
		if err := c.rs.Encode(seg.Shards); err != nil {
			panic("coding: reed-solomon encode of well-formed shards: " + err.Error())
		}
	}
	for i, sh := range seg.Shards {
		seg.Hashes[i] = HashOf(sh)
	}
	return seg
}

// Encode reads an object from r until EOF, encrypts it with key, cuts it
// into segments and codes each into shards, and hands every segment to put,
// in order, from the calling goroutine. The shards are only valid until put
// returns: put stores or copies them. When r is exhausted and every put has
// succeeded, Encode returns the manifest, whose hash with key makes the cap.
//
// Segments are read, coded and put in a pipeline, so coding overlaps both
// reading and putting, and memory is bounded by a few segments. A reader
// that blocks (a live recording) simply delays the next segment; to stop
// such an Encode, cancel ctx and unblock the reader.
//
// Errors: a bad Params is ErrBadScheme or names the field; an object whose
// manifest would exceed MaxManifestSize is ErrTooLarge; a read error or an
// error from put is returned wrapped, and nothing after it is put.
func Encode(ctx context.Context, r io.Reader, key Key, p Params, put func(context.Context, *Segment) error) (*Manifest, error) {
	p, err := p.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("coding: encode: %w", err)
	}
	c, err := newCodec(key, p.Scheme)
	if err != nil {
		return nil, fmt.Errorf("coding: encode: %w", err)
	}
	m := &Manifest{SegmentSize: p.SegmentSize, Scheme: p.Scheme, ContentType: p.ContentType}
	maxSegs := (MaxManifestSize - manifestHeader - len(p.ContentType)) / (p.Scheme.Total * HashSize)
	pool := newBufferPool(p.Scheme.Total*shardSize(p.SegmentSize, p.Scheme.Needed), p.Workers+2)
	defer pool.close()

	type job struct {
		index int
		buf   []byte
		n     int
	}
	var index int
	var eof bool
	next := func(ctx context.Context) (job, bool, error) {
		if eof {
			return job{}, false, nil
		}
		buf, err := pool.get(ctx)
		if err != nil {
			return job{}, false, err
		}
		n, err := io.ReadFull(r, buf[:p.SegmentSize])
		switch {
		case errors.Is(err, io.EOF) && index > 0:
			pool.put(buf)
			return job{}, false, nil
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			eof = true // a short (or, for an empty object, empty) last segment
		case err != nil:
			pool.put(buf)
			return job{}, false, fmt.Errorf("coding: encode: read segment %d: %w", index, err)
		}
		if index >= maxSegs {
			pool.put(buf)
			return job{}, false, fmt.Errorf("coding: encode: %w: more than %d segments of %d bytes coded %s", ErrTooLarge, maxSegs, p.SegmentSize, p.Scheme)
		}
		j := job{index: index, buf: buf, n: n}
		index++
		m.Size += int64(n)
		return j, true, nil
	}
	type result struct {
		seg *Segment
		buf []byte
	}
	work := func(_ context.Context, j job) (result, error) {
		return result{c.seal(j.index, j.buf, j.n), j.buf}, nil
	}
	done := func(res result) error {
		defer pool.put(res.buf)
		if err := put(ctx, res.seg); err != nil {
			return fmt.Errorf("coding: encode: put segment %d: %w", res.seg.Index, err)
		}
		m.ShardHashes = append(m.ShardHashes, res.seg.Hashes)
		return nil
	}
	if err := ordered(ctx, p.Workers, next, work, done); err != nil {
		return nil, err
	}
	return m, nil
}
