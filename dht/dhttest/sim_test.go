package dhttest_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
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
	logger := slog.New(slog.DiscardHandler)
	if *simLog != "" {
		f, err := os.Create(*simLog)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		logger = slog.New(slog.NewTextHandler(f, nil))
	}
	synctest.Test(t, func(t *testing.T) {
		c := dhttest.New(t, dhttest.Options{N: n, Seed: seed, Net: simNet, JoinBatch: 32, Logger: logger})
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

// -sim.sizes picks the ring sizes of the simulations; the default fits
// the test time budget under -race. The figures in the package doc come
// from: go test ./dht/dhttest -run Sim -v -sim.sizes=32,128,1000
const defaultSizes = "32,128,256"

var simLog = flag.String("sim.log", "", "file to write the simulated peers' ring events to (simulated timestamps)")

var simWindow = flag.Duration("sim.window", 10*time.Second, "TestSimMassRestart restarts the killed peers at random moments within this window")

var simSizes = flag.String("sim.sizes", defaultSizes, "comma-separated ring sizes for TestSimLookups; the largest also runs TestSimMassRestart (128 by default)")

func sizes(t *testing.T) []int {
	var ns []int
	for _, f := range strings.Split(*simSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			t.Fatalf("bad -sim.sizes entry %q", f)
		}
		ns = append(ns, n)
	}
	return ns
}

func TestSimLookups(t *testing.T) {
	for _, n := range sizes(t) {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			simulate(t, n, uint64(n), func(t *testing.T, c *dhttest.Cluster) {
				checkLookups(t, c, 4)
				// replica sets too: the first 20 peers clockwise, longer
				// than a successor list
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				if _, err := c.CheckLookups(ctx, 1, 20); err != nil {
					t.Fatal(err)
				}
				if got, n := c.Peer(0).Node().EstimateSize(), float64(n); got < n/3 || got > 3*n {
					t.Errorf("estimated size = %.0f, want within 3× of %.0f", got, n)
				} else {
					t.Logf("N=%d: peer 0 estimates %.0f peers", int(n), got)
				}
			})
		})
	}
}

// TestSimMassRestart kills half the ring at once and restarts the dead
// half at random moments within 10 s (-sim.window; the 2007 Skype
// outage), then checks that the ring reconverges and every lookup is right
// again. It logs the control traffic per live peer: steady state, the
// peak second, and the time to reconverge (all simulated time).
func TestSimMassRestart(t *testing.T) {
	n := slices.Max(sizes(t))
	if *simSizes == defaultSizes {
		n = 128 // the default run keeps the restart storm small under -race
	}
	window := *simWindow
	simulate(t, n, 7, func(t *testing.T, c *dhttest.Cluster) {
		rng := rand.New(rand.NewPCG(7, 7))
		perSecond := func(from, to dht.Traffic, secs float64, peers int) float64 {
			return float64(to.Sent-from.Sent) / secs / float64(peers)
		}
		t0 := c.Traffic()
		time.Sleep(30 * time.Second)
		steady := perSecond(t0, c.Traffic(), 30, n)

		victims := rng.Perm(n)[:n/2]
		at := map[int]time.Duration{}
		for _, v := range victims {
			at[v] = time.Duration(rng.Int64N(int64(window)))
		}
		start := time.Now()
		for _, v := range victims {
			c.Stop(v)
		}
		peak, peakAt := 0.0, time.Duration(0)
		last := c.Traffic()
		converged := time.Duration(0)
		for sec := 1; converged == 0; sec++ {
			time.Sleep(time.Second)
			for _, v := range victims {
				if at[v] < time.Since(start) && !c.Peer(v).Running() {
					if err := c.Restart(v); err != nil {
						t.Fatal(err)
					}
				}
			}
			cur := c.Traffic()
			if r := perSecond(last, cur, 1, len(c.Live())); r > peak {
				peak, peakAt = r, time.Since(start)
			}
			last = cur
			if time.Since(start) > window && c.Converged() == nil {
				converged = time.Since(start)
			}
			if sec > 600 {
				dumpBad(t, c)
				t.Fatalf("not converged 10 minutes after the restart storm: %v", c.Converged())
			}
		}
		t.Logf("N=%d, %d killed at once, restarted within %v: reconverged %v after the kill (%v after the last restart)",
			n, len(victims), window, converged.Round(time.Second), (converged - window).Round(time.Second))
		t.Logf("control traffic per live peer: steady %.0f B/s, peak %.0f B/s (%.1f× steady, %v after the kill)",
			steady, peak, peak/steady, peakAt.Round(time.Second))
		checkLookups(t, c, 2)
		t1 := c.Traffic()
		time.Sleep(30 * time.Second)
		t.Logf("control traffic per live peer after reconvergence: %.0f B/s", perSecond(t1, c.Traffic(), 30, n))
	})
}

// dumpBad logs the peers whose neighbourhood is wrong: what they hold
// and what they should.
func dumpBad(t *testing.T, c *dhttest.Cluster) {
	live := c.Live()
	slices.SortFunc(live, func(a, b *dhttest.Peer) int { return a.ID.Compare(b.ID) })
	idx := map[dht.ID]int{}
	for _, p := range live {
		idx[p.ID] = p.Index
	}
	name := func(id dht.ID) string {
		if i, ok := idx[id]; ok {
			return fmt.Sprintf("%d:%s", i, id.Short())
		}
		return "gone:" + id.Short()
	}
	for i, p := range live {
		st := p.Node().Status()
		var got, want []string
		for _, s := range st.Successors {
			got = append(got, name(s.ID)+"/"+s.State.String())
		}
		for k := 1; k <= 16 && k < len(live); k++ {
			want = append(want, name(live[(i+k)%len(live)].ID))
		}
		pred := "none"
		if st.Predecessor != nil {
			pred = name(st.Predecessor.ID)
		}
		wantPred := name(live[(i+len(live)-1)%len(live)].ID)
		if pred != wantPred || len(got) != len(want) || !slices.EqualFunc(got, want, func(g, w string) bool { return strings.HasPrefix(g, w+"/") }) {
			t.Logf("bad %s joined=%v pred %s (want %s)\n  got  %v\n  want %v", name(p.ID), st.Joined, pred, wantPred, got, want)
		}
	}
}
