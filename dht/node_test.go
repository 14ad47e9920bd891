package dht_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/dht/memnet"
)

func TestNewValidatesConfig(t *testing.T) {
	nw := memnet.New(memnet.Config{})
	tr, _ := nw.Listen(dht.Key("a"), "a")
	tests := []struct {
		name string
		cfg  dht.Config
		want string
	}{
		{"no transport", dht.Config{}, "no Transport"},
		{"negative period", dht.Config{Transport: tr, StabilizePeriod: -1}, "negative StabilizePeriod"},
		{"timeouts crossed", dht.Config{Transport: tr, MinTimeout: time.Minute, MaxTimeout: time.Second}, "MinTimeout"},
		{"successor list too long", dht.Config{Transport: tr, Successors: 1000}, "Successors"},
		{"defaults", dht.Config{Transport: tr}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dht.New(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// startNodes runs n nodes on one memnet, the first alone and the others
// joining through it, and stops them at cleanup.
func startNodes(t *testing.T, nw *memnet.Network, n int) []*dht.Node {
	t.Helper()
	var nodes []*dht.Node
	var wg sync.WaitGroup
	for i := range n {
		tr, err := nw.Listen(dht.Key(string(rune('a'+i))), "")
		if err != nil {
			t.Fatal(err)
		}
		cfg := dht.Config{Transport: tr, StabilizePeriod: 20 * time.Millisecond, FixFingersPeriod: 20 * time.Millisecond,
			PingPeriod: 50 * time.Millisecond, Backoff: dht.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}, Seed: uint64(i + 1)}
		if i > 0 {
			cfg.Bootstrap = []string{nodes[0].Self().Addr}
		}
		node, err := dht.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
		wg.Go(func() {
			if err := node.Run(context.Background()); err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
		wg.Wait()
	})
	return nodes
}

func TestSubscribeAndUpperLayerCalls(t *testing.T) {
	nw := memnet.New(memnet.Config{})
	nodes := startNodes(t, nw, 1)
	a := nodes[0]
	changes, cancel := a.Subscribe()
	defer cancel()
	// Bring a third node in through a.
	tr, _ := nw.Listen(dht.Key("third"), "third")
	c, err := dht.New(dht.Config{Transport: tr, Bootstrap: []string{a.Self().Addr}, StabilizePeriod: 20 * time.Millisecond,
		Backoff: dht.Backoff{Initial: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	c.Handle("store.echo", func(_ context.Context, req *dht.Request) ([]byte, error) {
		return append(req.From[:], req.Body...), nil
	})
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	defer func() { c.Close(); <-done }()

	deadline := time.After(10 * time.Second)
	for {
		var nb dht.Neighbours
		select {
		case nb = <-changes:
		case <-deadline:
			t.Fatal("no change with the new successor within 10s")
		}
		if len(nb.Successors) > 0 && nb.Successors[0].ID == c.Self().ID {
			break
		}
	}

	got, err := a.Call(context.Background(), c.Self(), "store.echo", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	self := a.Self().ID
	if want := append(self[:], 'x'); string(got) != string(want) {
		t.Errorf("echo = %x, want caller ID and body %x", got, want)
	}
	if _, err := a.Call(context.Background(), c.Self(), "store.nope", nil); !errors.Is(err, dht.ErrUnknownMethod) {
		t.Errorf("unknown method: err = %v, want ErrUnknownMethod", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Handle(ring.*) did not panic")
		}
	}()
	c.Handle("ring.find", nil)
}

// FuzzRingHandlers sends arbitrary bodies to every ring method of a live
// node: each answer is a success or ErrBadRequest, and the node keeps
// serving.
func FuzzRingHandlers(f *testing.F) {
	for _, s := range [][]byte{nil, {0}, {1}, make([]byte, 33), append(make([]byte, 32), 3), {3, 'a', ':', '1'}, {1, 0xff, 0xff}} {
		f.Add(uint8(0), s)
		f.Add(uint8(2), s)
		f.Add(uint8(3), s)
	}
	nw := memnet.New(memnet.Config{})
	tr, _ := nw.Listen(dht.Key("target"), "target")
	node, err := dht.New(dht.Config{Transport: tr, MergePeriod: -1})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	f.Cleanup(func() { cancel(); <-done })
	caller, _ := nw.Listen(dht.Key("caller"), "caller")
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := caller.Call(ctx, node.Self(), "ring.ping", nil); err == nil {
			break
		} else if time.Now().After(deadline) {
			f.Fatalf("node not serving: %v", err)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	methods := []string{"ring.ping", "ring.state", "ring.notify", "ring.find", "ring.leave"}
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		method := methods[int(m)%len(methods)]
		_, err := caller.Call(context.Background(), node.Self(), method, body)
		if err != nil && !errors.Is(err, dht.ErrBadRequest) {
			t.Fatalf("%s %x: err = %v, want nil or ErrBadRequest", method, body, err)
		}
		if _, err := caller.Call(context.Background(), node.Self(), "ring.ping", nil); err != nil {
			t.Fatalf("node stopped serving after %s %x: %v", method, body, err)
		}
	})
}
