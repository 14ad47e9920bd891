package dhttest_test

import (
	"context"
	"testing"
	"time"

	"github.com/voicering/voicering/dht/dhttest"
)

func TestMemRingConverges(t *testing.T) {
	c := dhttest.New(t, dhttest.Options{N: 20, Node: dhttest.Fast()})
	if err := c.WaitConverged(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CheckLookups(ctx, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lookups %d, mean hops %.2f, p99 %d", res.Lookups, res.MeanHops(), res.Percentile(99))
}
