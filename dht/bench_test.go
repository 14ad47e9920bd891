package dht

import (
	"context"
	"testing"
)

// BenchmarkCall measures calls over loopback TLS, 16 at once per core,
// for a body the size of a binding write (200 B) and of a shard (1 MiB,
// echoed back), over HTTP/2 (what peers spoke before, and still speak to
// older peers) and then in the framed protocol. x-http2 is how many times
// faster the framed calls were than the HTTP/2 ones of the same run.
//
//	go test -run '^$' -bench Call ./dht
func BenchmarkCall(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"200B", 200}, {"1MiB", 1 << 20}} {
		body := make([]byte, bc.size)
		var h2 float64 // ns per call over HTTP/2, from the run before
		b.Run(bc.name+"/http2", func(b *testing.B) {
			benchCalls(b, TLSConfig{http2Only: true}, body)
			h2 = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		b.Run(bc.name+"/framed", func(b *testing.B) {
			benchCalls(b, TLSConfig{}, body)
			b.ReportMetric(h2/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-http2")
		})
	}
}

func benchCalls(b *testing.B, cfg TLSConfig, body []byte) {
	srv := serveTLS(b, cfg)
	cli := clientTLS(b, cfg)
	ctx := context.Background()
	if _, err := cli.Call(ctx, srv.tr.Local(), "echo", body); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cli.Call(ctx, srv.tr.Local(), "echo", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
}
