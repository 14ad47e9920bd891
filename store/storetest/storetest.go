// Package storetest is the conformance suite of the store contract. Every
// implementation of store.Shards and store.Records runs it from its own
// tests, so that all of them behave alike:
//
//	func TestConformance(t *testing.T) {
//		storetest.TestShards(t, func(t *testing.T) store.Shards { return openStore(t) })
//		storetest.TestRecords(t, func(t *testing.T) store.Records { return openStore(t) })
//	}
//
// The suite sees only the interfaces. Its subtests run in parallel, each on
// a fresh store from the factory, which must register its own cleanup with
// t.Cleanup. The expiry tests wait for real time to pass (a few seconds in
// all), polling with a deadline.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// pollDeadline bounds how long the suite waits for a condition that must
// become true (an entry expiring). It is generous for slow machines under
// the race detector; a passing run waits only as long as the condition
// needs.
const pollDeadline = 30 * time.Second

// eventually polls cond until it reports true, and fails the test if it
// has not by the deadline or if it returns an error.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(pollDeadline)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: still false after %v", what, pollDeadline)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// canceled returns a context that is already canceled.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// wantErrIs fails the test unless errors.Is(err, target).
func wantErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %q", what, err, target)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// seq fills n bytes from a seed, so tests need no randomness to replay.
func seq(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func describe(v any) string { return fmt.Sprintf("%+v", v) }
