package memnet_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/dht/memnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type echo struct{}

func (echo) Dispatch(_ context.Context, req *dht.Request) ([]byte, error) {
	if req.Method == "bad" {
		return nil, dht.ErrBadRequest
	}
	return append(req.From[:], req.Body...), nil
}

func serve(t *testing.T, tr *memnet.Transport) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { tr.Serve(ctx, echo{}) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Serve registers synchronously enough for a caller that retries; wait
	// until it answers.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := tr.Call(context.Background(), tr.Local(), "ping", nil); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("transport never served: %v", err)
		}
	}
}

func TestNetwork(t *testing.T) {
	nw := memnet.New(memnet.Config{Seed: 3})
	a, _ := nw.Listen(dht.Key("a"), "a")
	b, _ := nw.Listen(dht.Key("b"), "b")
	c, _ := nw.Listen(dht.Key("c"), "c")
	for _, tr := range []*memnet.Transport{a, b, c} {
		serve(t, tr)
	}
	if _, err := nw.Listen(dht.Key("x"), "a"); err == nil {
		t.Error("second Listen on a taken address succeeded")
	}
	ctx := context.Background()
	call := func(from *memnet.Transport, to dht.Peer, method string) error {
		_, err := from.Call(ctx, to, method, []byte("body"))
		return err
	}
	tests := []struct {
		name    string
		setup   func()
		from    *memnet.Transport
		to      dht.Peer
		method  string
		wantErr error
	}{
		{"plain call", func() {}, a, b.Local(), "m", nil},
		{"wrong node at the address", func() {}, a, dht.Peer{ID: dht.Key("c"), Addr: "b"}, "m", dht.ErrPeerID},
		{"handler error", func() {}, a, b.Local(), "bad", dht.ErrBadRequest},
		{"nobody there", func() {}, a, dht.Peer{Addr: "nowhere"}, "m", dht.ErrUnreachable},
		{"disconnected", func() { nw.Disconnect("a", "b") }, a, b.Local(), "m", dht.ErrUnreachable},
		{"other links stay", func() {}, a, c.Local(), "m", nil},
		{"reconnected", func() { nw.Connect("a", "b") }, a, b.Local(), "m", nil},
		{"partitioned", func() { nw.Partition([]string{"a"}, []string{"b", "c"}) }, a, c.Local(), "m", dht.ErrUnreachable},
		{"same side", func() {}, b, c.Local(), "m", nil},
		{"healed", func() { nw.Heal() }, a, c.Local(), "m", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			if err := call(tt.from, tt.to, tt.method); !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if got := a.Meter().PerPeer()[b.Local().ID]; got.Calls == 0 || got.Sent == 0 || got.Received == 0 {
		t.Errorf("a's traffic with b = %+v, want calls and bytes", got)
	}
	if got := nw.Traffic(); got.Calls == 0 || got.Sent == 0 {
		t.Errorf("network traffic = %+v, want calls and bytes", got)
	}
}

func TestDropWaitsForTheCaller(t *testing.T) {
	nw := memnet.New(memnet.Config{Drop: 1})
	a, _ := nw.Listen(dht.Key("a"), "a")
	b, _ := nw.Listen(dht.Key("b"), "b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_ = b
	if _, err := a.Call(ctx, dht.Peer{Addr: "b"}, "m", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dropped call: err = %v, want the caller's deadline", err)
	}
}
