package coding

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/reedsolomon"
)

// Benchmarks are named by shape: scheme as needed x total, then object size.
// The pipeline benchmarks (Encode, Decode) also report x-ideal: their
// throughput over the ideal composed from the primitives, each measured in
// the same run on the very buffers the pipeline touches:
//
//	ideal time per object = segments × Σ stage time per segment
//
// encode stages: read (copy n bytes in) + seal (AES-GCM over n) + Reed–Solomon
// encode + SHA-256 of every one of the total shards; decode stages: SHA-256 of
// the needed shards + Reed–Solomon reconstruction (degraded only) + join
// (copy needed shards) + open (AES-GCM over n). The sum is the cost of doing
// each stage once, serially, with no overhead; w1 runs one coding worker
// (beside the reader and writer goroutines), w2 two.
//
// go test -run '^$' -bench . -benchtime 2x ./coding   (quick)
// go test -run '^$' -bench 'Encode|Decode' ./coding     (BENCHMARKS.md)

var benchSchemes = []Scheme{{4, 6}, {4, 8}, {6, 9}, {10, 14}}

var benchSizes = []struct {
	name string
	n    int
}{{"480kB", 480_000}, {"64MiB", 64 << 20}}

func shapeName(s Scheme, size string) string { return fmt.Sprintf("%dx%d/%s", s.Needed, s.Total, size) }

// segShape is one full segment of an object of a given size and scheme.
type segShape struct {
	s    Scheme
	n    int // plaintext bytes in the segment
	segs int // segments in the object
}

func shapeOf(s Scheme, size int) segShape {
	return segShape{s, min(size, DefaultSegmentSize), Segments(int64(size), DefaultSegmentSize)}
}

func (sh segShape) ss() int { return shardSize(sh.n, sh.s.Needed) }

// Primitives: each returns the operation on one segment of the shape, set
// up on the buffers the pipeline would touch, and the bytes it processes.

func rsEncodeOp(sh segShape) (func(), int) {
	rs, err := reedsolomon.New(sh.s.Needed, sh.s.Parity())
	if err != nil {
		panic(err)
	}
	shards := make([][]byte, sh.s.Total)
	for i := range shards {
		shards[i] = randomBytes(uint64(i), sh.ss())
	}
	return func() {
		if err := rs.Encode(shards); err != nil {
			panic(err)
		}
	}, sh.s.Needed * sh.ss()
}

func rsReconstructOp(sh segShape) (func(), int) {
	rs, err := reedsolomon.New(sh.s.Needed, sh.s.Parity())
	if err != nil {
		panic(err)
	}
	shards := make([][]byte, sh.s.Total)
	for i := range shards {
		shards[i] = randomBytes(uint64(i), sh.ss())
	}
	if err := rs.Encode(shards); err != nil {
		panic(err)
	}
	work := make([][]byte, sh.s.Total)
	return func() {
		copy(work, shards)
		for i := range sh.s.Parity() { // the first parity-many data shards lost
			work[i] = nil
		}
		if err := rs.ReconstructData(work); err != nil {
			panic(err)
		}
	}, sh.s.Needed * sh.ss()
}

func sha256Op(n int) (func(), int) {
	buf := randomBytes(1, n)
	return func() { sha256.Sum256(buf) }, n
}

func sealOp(n int) (func(), int) {
	c, _ := newCodec(testKey(1), Scheme{1, 1})
	buf := make([]byte, n+tagSize)
	return func() { c.aead.Seal(buf[:0], nonce(1), buf[:n], segmentAAD) }, n
}

// openOp opens a sealed segment; it restores the sealed bytes first (Open
// works in place), so its time includes one copy of the segment.
func openOp(n int) (func(), int) {
	c, _ := newCodec(testKey(1), Scheme{1, 1})
	sealed := c.aead.Seal(nil, nonce(1), randomBytes(1, n), segmentAAD)
	work := make([]byte, len(sealed))
	return func() {
		copy(work, sealed)
		if _, err := c.aead.Open(work[:0], nonce(1), work, segmentAAD); err != nil {
			panic(err)
		}
	}, n
}

func copyOp(n int) (func(), int) {
	src, dst := randomBytes(1, n), make([]byte, n)
	return func() { copy(dst, src) }, n
}

// benchOp runs a primitive as a standard benchmark.
func benchOp(b *testing.B, op func(), n int) {
	b.SetBytes(int64(n))
	for b.Loop() {
		op()
	}
}

// measure returns the mean time of op in ns, timing it for at least 200 ms.
// It is for composing the ideal inside a running benchmark, where
// testing.Benchmark cannot be nested.
func measure(op func(), _ int) float64 {
	op() // warm up
	var n int
	start := time.Now()
	for n < 3 || time.Since(start) < 200*time.Millisecond {
		op()
		n++
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func BenchmarkReedSolomonEncode(b *testing.B) {
	for _, s := range benchSchemes {
		for _, sz := range benchSizes {
			b.Run(shapeName(s, sz.name), func(b *testing.B) { op, n := rsEncodeOp(shapeOf(s, sz.n)); benchOp(b, op, n) })
		}
	}
}

func BenchmarkReedSolomonReconstruct(b *testing.B) {
	for _, s := range benchSchemes {
		for _, sz := range benchSizes {
			b.Run(shapeName(s, sz.name), func(b *testing.B) { op, n := rsReconstructOp(shapeOf(s, sz.n)); benchOp(b, op, n) })
		}
	}
}

func BenchmarkSHA256(b *testing.B) {
	for _, n := range []int{48 << 10, 120 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) { op, n := sha256Op(n); benchOp(b, op, n) })
	}
}

func BenchmarkAESGCM(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"480kB", 480_000}, {"1MiB", DefaultSegmentSize}} {
		b.Run("Seal/"+sz.name, func(b *testing.B) { op, n := sealOp(sz.n); benchOp(b, op, n) })
		b.Run("Open/"+sz.name, func(b *testing.B) { op, n := openOp(sz.n); benchOp(b, op, n) })
	}
}

// stageNs holds the measured time of each stage for one segment.
type stageNs struct {
	copyIn, seal, rsEncode, hashShard, rsReconstruct, join, open float64
}

var (
	stagesMu   sync.Mutex
	stageCache = map[segShape]stageNs{}
)

// stagesOf measures every primitive for one segment of sh, once per run.
func stagesOf(sh segShape) stageNs {
	stagesMu.Lock()
	defer stagesMu.Unlock()
	if st, ok := stageCache[sh]; ok {
		return st
	}
	st := stageNs{
		copyIn:        measure(copyOp(sh.n)),
		seal:          measure(sealOp(sh.n)),
		rsEncode:      measure(rsEncodeOp(sh)),
		hashShard:     measure(sha256Op(sh.ss())),
		rsReconstruct: measure(rsReconstructOp(sh)),
		join:          measure(copyOp(sh.s.Needed * sh.ss())),
		open:          measure(openOp(sh.n)) - measure(copyOp(sh.n+tagSize)),
	}
	stageCache[sh] = st
	return st
}

func (st stageNs) encodeIdeal(sh segShape) float64 {
	return float64(sh.segs) * (st.copyIn + st.seal + st.rsEncode + float64(sh.s.Total)*st.hashShard)
}

func (st stageNs) decodeIdeal(sh segShape, degraded bool) float64 {
	t := float64(sh.s.Needed)*st.hashShard + st.join + st.open
	if degraded {
		t += st.rsReconstruct
	}
	return float64(sh.segs) * t
}

func reportIdeal(b *testing.B, idealNs float64) {
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(idealNs/perOp, "x-ideal")
}

var benchObjects sync.Map // size → []byte

func benchObject(n int) []byte {
	if v, ok := benchObjects.Load(n); ok {
		return v.([]byte)
	}
	v, _ := benchObjects.LoadOrStore(n, randomBytes(uint64(n), n))
	return v.([]byte)
}

func BenchmarkEncode(b *testing.B) {
	for _, s := range benchSchemes {
		for _, sz := range benchSizes {
			for _, w := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/w%d", shapeName(s, sz.name), w), func(b *testing.B) {
					sh := shapeOf(s, sz.n)
					ideal := stagesOf(sh).encodeIdeal(sh)
					data := benchObject(sz.n)
					p := Params{Scheme: s, Workers: w}
					nop := func(context.Context, *Segment) error { return nil }
					b.SetBytes(int64(len(data)))
					b.ResetTimer()
					for b.Loop() {
						if _, err := Encode(context.Background(), bytes.NewReader(data), testKey(1), p, nop); err != nil {
							b.Fatal(err)
						}
					}
					reportIdeal(b, ideal)
				})
			}
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, s := range benchSchemes {
		for _, sz := range benchSizes {
			data := benchObject(sz.n)
			var st stored
			for _, mode := range []string{"healthy", "degraded"} {
				for _, w := range []int{1, 2} {
					b.Run(fmt.Sprintf("%s/%s/w%d", shapeName(s, sz.name), mode, w), func(b *testing.B) {
						if st.m == nil {
							st = encodeBytes(b, data, testKey(1), Params{Scheme: s})
						}
						sh := shapeOf(s, sz.n)
						degraded := mode == "degraded"
						ideal := stagesOf(sh).decodeIdeal(sh, degraded)
						first := 0 // healthy: the data shards arrive first
						if degraded {
							first = s.Parity() // the first parity-many data shards are lost
						}
						fetch := func(_ context.Context, c *Collector) error {
							for i := first; i < s.Total; i++ {
								if enough, _ := c.Offer(i, st.shards[c.Segment()][i]); enough {
									break
								}
							}
							return nil
						}
						d, err := NewDecoder(testKey(1), st.m, w)
						if err != nil {
							b.Fatal(err)
						}
						b.SetBytes(int64(len(data)))
						b.ResetTimer()
						for b.Loop() {
							if err := d.Decode(context.Background(), io.Discard, fetch); err != nil {
								b.Fatal(err)
							}
						}
						reportIdeal(b, ideal)
					})
				}
			}
		}
	}
}
