package dhttest_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/dht/dhttest"
	"github.com/voicering/voicering/dht/memnet"
)

// simNet is the simulated network: 5–25 ms one way.
var simNet = memnet.Config{Delay: 5 * time.Millisecond, Jitter: 20 * time.Millisecond}

// simulate runs f in a synctest bubble (virtual time) on a ring of n
// peers with the default (real-world) periods, once it has converged.
func simulate(t *testing.T, n int, seed uint64, f func(t *testing.T, c *dhttest.Cluster)) {
	synctest.Test(t, func(t *testing.T) {
		c := dhttest.New(t, dhttest.Options{N: n, Seed: seed, Net: simNet, JoinBatch: 32})
		defer c.Close()
		start := time.Now()
		if err := c.WaitConverged(10 * time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("N=%d: converged %v (simulated) after the last join", n, time.Since(start).Round(time.Second))
		f(t, c)
	})
}

func checkLookups(t *testing.T, c *dhttest.Cluster, perPeer int) dhttest.LookupResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	res, err := c.CheckLookups(ctx, perPeer, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := len(c.Live())
	t.Logf("N=%d: %d lookups all correct; hops mean %.2f, p99 %d (½·log2 N = %.2f)", n, res.Lookups, res.MeanHops(), res.Percentile(99), math.Log2(float64(n))/2)
	return res
}

func TestSimLookups(t *testing.T) {
	for _, n := range []int{32, 128, 256} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			simulate(t, n, uint64(n), func(t *testing.T, c *dhttest.Cluster) {
				res := checkLookups(t, c, 4)
				// replica sets too: the first 5 peers clockwise
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				if _, err := c.CheckLookups(ctx, 1, 5); err != nil {
					t.Fatal(err)
				}
				_ = res
				_ = dht.ID{}
			})
		})
	}
}
