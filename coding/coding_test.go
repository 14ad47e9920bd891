package coding

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
)

// stored is an object as the ring would hold it: a manifest and a copy of
// every shard of every segment.
type stored struct {
	m      *Manifest
	shards [][][]byte // [segment][shard]
}

func encodeBytes(t testing.TB, data []byte, key Key, p Params) stored {
	t.Helper()
	var st stored
	m, err := Encode(context.Background(), bytes.NewReader(data), key, p, func(_ context.Context, s *Segment) error {
		if s.Index != len(st.shards) {
			return fmt.Errorf("segment %d put out of order, want %d", s.Index, len(st.shards))
		}
		cp := make([][]byte, len(s.Shards))
		for i, sh := range s.Shards {
			cp[i] = bytes.Clone(sh)
		}
		st.shards = append(st.shards, cp)
		return nil
	})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	st.m = m
	return st
}

// fetchFrom offers the shards of st that keep(segment, shard) allows, in a
// seeded random order, as peers answering in any order would.
func fetchFrom(st stored, seed uint64, keep func(s, i int) bool) Fetch {
	return func(ctx context.Context, c *Collector) error {
		r := rand.New(rand.NewPCG(seed, uint64(c.Segment())))
		for _, i := range r.Perm(len(st.shards[c.Segment()])) {
			if keep != nil && !keep(c.Segment(), i) {
				continue
			}
			if enough, _ := c.Offer(i, st.shards[c.Segment()][i]); enough {
				return nil
			}
		}
		return nil
	}
}

func decodeBytes(t testing.TB, st stored, key Key, fetch Fetch) ([]byte, error) {
	t.Helper()
	d, err := NewDecoder(key, st.m, 0)
	if err != nil {
		t.Fatalf("NewDecoder: %v", err)
	}
	var out bytes.Buffer
	err = d.Decode(context.Background(), &out, fetch)
	return out.Bytes(), err
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testKey(seed byte) Key {
	var k Key
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	const seg = 4 << 10
	tests := []struct {
		name   string
		size   int
		scheme Scheme
	}{
		{"empty", 0, Scheme{4, 6}},
		{"one byte", 1, Scheme{4, 6}},
		{"odd size", 4097, Scheme{4, 6}},
		{"exactly one segment", seg, Scheme{4, 6}},
		{"exactly three segments", 3 * seg, Scheme{6, 9}},
		{"many odd segments", 17*seg + 333, Scheme{10, 14}},
		{"no parity", 2*seg + 5, Scheme{3, 3}},
		{"replication 1-of-3", 2*seg + 5, Scheme{1, 3}},
		{"widest", 3*seg + 1, Scheme{128, 256}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := randomBytes(uint64(tt.size), tt.size)
			key := testKey(7)
			st := encodeBytes(t, data, key, Params{Scheme: tt.scheme, SegmentSize: seg, ContentType: "audio/wav"})
			if got, want := st.m.Size, int64(tt.size); got != want {
				t.Errorf("manifest size %d, want %d", got, want)
			}
			if got, want := len(st.shards), Segments(int64(tt.size), seg); got != want {
				t.Errorf("%d segments, want %d", got, want)
			}
			// Lose as many shards as the scheme allows, a different set in
			// every segment.
			for trial := range uint64(3) {
				lost := map[[2]int]bool{}
				r := rand.New(rand.NewPCG(trial, 1))
				for s := range st.shards {
					for _, i := range r.Perm(tt.scheme.Total)[:tt.scheme.Parity()] {
						lost[[2]int{s, i}] = true
					}
				}
				got, err := decodeBytes(t, st, key, fetchFrom(st, trial, func(s, i int) bool { return !lost[[2]int{s, i}] }))
				if err != nil {
					t.Fatalf("trial %d: Decode with %d of %d shards lost per segment: %v", trial, tt.scheme.Parity(), tt.scheme.Total, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("trial %d: decoded %d bytes differ from the %d put", trial, len(got), len(data))
				}
			}
		})
	}
}

func TestCiphertextOnly(t *testing.T) {
	// A storage peer sees shards: none may contain the plaintext.
	pattern := bytes.Repeat([]byte("HELLO-VOICEMAIL-"), 4096)
	st := encodeBytes(t, pattern, testKey(1), Params{Scheme: Scheme{2, 3}, SegmentSize: 16 << 10})
	for s, seg := range st.shards {
		for i, sh := range seg {
			if bytes.Contains(sh, []byte("HELLO-VOICEMAIL")) {
				t.Fatalf("segment %d shard %d holds plaintext", s, i)
			}
		}
	}
}

func TestTooFewShards(t *testing.T) {
	data := randomBytes(3, 10000)
	key := testKey(3)
	st := encodeBytes(t, data, key, Params{Scheme: Scheme{4, 6}, SegmentSize: 4096})
	// Segment 1: shards 0 and 5 never arrive, shard 2 arrives corrupt.
	st.shards[1][2] = bytes.Clone(st.shards[1][2])
	st.shards[1][2][0] ^= 1
	_, err := decodeBytes(t, st, key, fetchFrom(st, 1, func(s, i int) bool { return s != 1 || (i != 0 && i != 5) }))
	var se *ShardError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("Decode error %v, want a *ShardError matching ErrTooFewShards", err)
	}
	if se.Segment != 1 || se.Good != 3 || se.Needed != 4 {
		t.Errorf("ShardError segment %d good %d needed %d, want segment 1 good 3 needed 4", se.Segment, se.Good, se.Needed)
	}
	if !slices.Equal(se.Missing, []int{0, 5}) || !slices.Equal(se.Corrupt, []int{2}) {
		t.Errorf("ShardError missing %v corrupt %v, want missing [0 5] corrupt [2]", se.Missing, se.Corrupt)
	}
	if got, want := err.Error(), "coding: decode: segment 1: 3 good shards of 4 needed; missing [0 5]; corrupt [2]"; got != want {
		t.Errorf("error text\n got %q\nwant %q", got, want)
	}
}

func TestCorruptShardsAreReplaced(t *testing.T) {
	// Parity-many corrupt shards in every segment are caught by hash, and
	// the good ones rebuild the object.
	data := randomBytes(4, 50000)
	key := testKey(4)
	st := encodeBytes(t, data, key, Params{Scheme: Scheme{4, 7}, SegmentSize: 8192})
	for s := range st.shards {
		for _, i := range []int{0, 3, 6} {
			st.shards[s][i] = bytes.Clone(st.shards[s][i])
			st.shards[s][i][len(st.shards[s][i])/2] ^= 0x80
		}
	}
	var corrupt int
	fetch := func(ctx context.Context, c *Collector) error {
		for i := range st.shards[c.Segment()] {
			enough, err := c.Offer(i, st.shards[c.Segment()][i])
			if errors.Is(err, ErrCorruptShard) {
				corrupt++ // Decode fetches one segment at a time per worker; counted under race below
			}
			if enough {
				return nil
			}
		}
		return nil
	}
	d, err := NewDecoder(key, st.m, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := d.Decode(context.Background(), &out, fetch); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("decoded bytes differ")
	}
	if want := 2 * len(st.shards); corrupt < want {
		t.Errorf("%d corrupt shards reported, want at least %d", corrupt, want)
	}
}

func TestWrongKey(t *testing.T) {
	st := encodeBytes(t, randomBytes(5, 3000), testKey(5), Params{SegmentSize: 4096})
	_, err := decodeBytes(t, st, testKey(6), fetchFrom(st, 0, nil))
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Decode with the wrong key: %v, want ErrDecrypt", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	tests := []struct {
		name string
		r    io.Reader
		p    Params
		put  func(context.Context, *Segment) error
		want error
	}{
		{"bad scheme", bytes.NewReader(nil), Params{Scheme: Scheme{5, 4}}, nil, ErrBadScheme},
		{"too many shards", bytes.NewReader(nil), Params{Scheme: Scheme{10, 300}}, nil, ErrBadScheme},
		{"read error", io.MultiReader(bytes.NewReader(make([]byte, 5000)), errReader{boom}), Params{SegmentSize: 4096}, nil, boom},
		{"put error", bytes.NewReader(make([]byte, 5000)), Params{SegmentSize: 4096}, func(context.Context, *Segment) error { return boom }, boom},
		{"too large", io.LimitReader(zeros{}, 2000*MinSegmentSize), Params{SegmentSize: MinSegmentSize, Scheme: Scheme{100, 256}}, nil, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			put := tt.put
			if put == nil {
				put = func(context.Context, *Segment) error { return nil }
			}
			_, err := Encode(context.Background(), tt.r, testKey(1), tt.p, put)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Encode error %v, want %v", err, tt.want)
			}
		})
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestEncodeCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := Encode(ctx, io.LimitReader(zeros{}, 64*MinSegmentSize), testKey(1), Params{SegmentSize: MinSegmentSize}, func(context.Context, *Segment) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Encode after cancel: %v, want context.Canceled", err)
	}
}

func TestMemoryBounded(t *testing.T) {
	// However large the object, the reader never runs more than Workers+2
	// segments ahead of put: that is the memory Encode holds.
	const workers, segs = 2, 64
	r := &countingReader{r: io.LimitReader(zeros{}, segs*MinSegmentSize)}
	p := Params{SegmentSize: MinSegmentSize, Workers: workers}
	_, err := Encode(context.Background(), r, testKey(1), p, func(_ context.Context, s *Segment) error {
		for range 200 {
			runtime.Gosched() // let the reader run ahead as far as it can
		}
		read := int((r.n.Load() + MinSegmentSize - 1) / MinSegmentSize)
		if limit := s.Index + workers + 2; read > limit {
			return fmt.Errorf("at segment %d the reader had read %d segments, limit %d", s.Index, read, limit)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestRebuild(t *testing.T) {
	// Any Needed shards rebuild every missing one, parity included,
	// byte for byte, without the key.
	st := encodeBytes(t, randomBytes(8, 9000), testKey(8), Params{Scheme: Scheme{3, 6}, SegmentSize: 4096})
	for _, keep := range [][]int{{0, 1, 2}, {3, 4, 5}, {0, 4, 5}} {
		c := st.m.Collect(1)
		for _, i := range keep {
			c.Offer(i, st.shards[1][i])
		}
		got, err := c.Rebuild()
		if err != nil {
			t.Fatalf("Rebuild from %v: %v", keep, err)
		}
		for i := range got {
			if !bytes.Equal(got[i], st.shards[1][i]) {
				t.Fatalf("Rebuild from %v: shard %d differs", keep, i)
			}
		}
	}
	c := st.m.Collect(0)
	c.Offer(0, st.shards[0][0])
	if _, err := c.Rebuild(); !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("Rebuild from one shard: %v, want ErrTooFewShards", err)
	}
}
