package peer

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store/bench/loopback"
)

// BenchmarkGet reads one 64 MiB object coded 4-of-6 from a ring of eight
// peers in this process (mutual TLS over 127.0.0.1, badger directories).
// x-raw is its throughput over that of copying the same bytes over one raw
// TLS 1.3 connection on loopback, timed in the same run (best of three):
// the most any transport could give on this machine.
//
//	go test -run '^$' -bench Get -benchtime 5x ./store/peer
func BenchmarkGet(b *testing.B) {
	const size = 64 << 20
	c := newCluster(b, 8)
	ctx := b.Context()
	cp, _, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(randomBytes(31, size)), coding.Params{Scheme: coding.Scheme{Needed: 4, Total: 6}})
	if err != nil {
		b.Fatal(err)
	}
	var raw time.Duration
	for range 3 {
		d, err := loopback.TLS(ctx, size)
		if err != nil {
			b.Fatal(err)
		}
		if raw == 0 || d < raw {
			raw = d
		}
	}
	reader := c.peers[5].p.Objects()
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if err := reader.Get(ctx, cp, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(raw.Seconds()*float64(b.N)/b.Elapsed().Seconds(), "x-raw")
}
