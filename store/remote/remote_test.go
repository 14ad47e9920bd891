package remote

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
	"github.com/voicering/voicering/store/local"
	"github.com/voicering/voicering/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve starts a peer on 127.0.0.1 serving a fresh local store over mutual
// TLS, and returns a client's view of that store. Everything stops at
// cleanup.
func serve(t *testing.T) *Store { return serveWithout(t) }

// olderPeer is a Registrar for a peer of an earlier version: it drops the
// methods named.
type olderPeer struct {
	r       Registrar
	without []string
}

func (o olderPeer) Handle(method string, h dht.Handler) {
	if !slices.Contains(o.without, method) {
		o.r.Handle(method, h)
	}
}

// serveWithout is serve for a peer that does not know the methods named.
func serveWithout(t *testing.T, methods ...string) *Store {
	t.Helper()
	backend, err := local.Open(t.TempDir(), local.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	srvID, err := dht.NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dht.NewTLSTransport(dht.TLSConfig{Identity: srvID, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	var mux dht.Mux
	Register(olderPeer{&mux, methods}, backend)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ctx, &mux); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cliID, err := dht.NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := dht.NewTLSTransport(dht.TLSConfig{Identity: cliID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		cancel()
		wg.Wait()
		srv.Close()
		backend.Close()
	})
	return New(cli, srv.Local())
}

// A peer from before store.shard.find still answers FindShard: the client
// falls back to asking for the shard, listing and asking again.
func TestFindShardOnOlderPeer(t *testing.T) {
	s := serveWithout(t, methodFindShard)
	id := store.ShardID{Segment: 3, Shard: 2}
	id.Index[0] = 9
	data := []byte("a shard stored before the ring shifted")
	if err := s.PutShard(t.Context(), id, coding.HashOf(data), data); err != nil {
		t.Fatal(err)
	}
	if _, err := s.call(t.Context(), methodFindShard, appendShardID(nil, id)); !errors.Is(err, dht.ErrUnknownMethod) {
		t.Fatalf("the older peer answered %s with %v, want ErrUnknownMethod", methodFindShard, err)
	}
	ask := id
	ask.Shard = 0
	got, b, _, err := s.FindShard(t.Context(), ask)
	if err != nil || got != id || !bytes.Equal(b, data) {
		t.Fatalf("FindShard(%s) on an older peer = %s, %q, %v; want %s and its data", ask, got, b, err, id)
	}
}

func TestConformance(t *testing.T) {
	t.Run("Shards", func(t *testing.T) {
		storetest.TestShards(t, func(t *testing.T) store.Shards { return serve(t) })
	})
	t.Run("Records", func(t *testing.T) {
		storetest.TestRecords(t, func(t *testing.T) store.Records { return serve(t) })
	})
}

func TestErrorsCrossTheWire(t *testing.T) {
	s := serve(t)
	ctx := t.Context()
	id := store.ShardID{Segment: 3, Shard: 1}
	if _, _, err := s.GetShard(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetShard of a missing shard: %v, want store.ErrNotFound", err)
	}
	data := []byte("ciphertext")
	if err := s.PutShard(ctx, id, coding.HashOf([]byte("other")), data); !errors.Is(err, store.ErrHashMismatch) {
		t.Errorf("PutShard with a wrong hash: %v, want store.ErrHashMismatch", err)
	}
	if _, err := s.MergeRecord(ctx, store.Key{1}, []store.Entry{{Name: ""}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("MergeRecord of an unnamed entry: %v, want store.ErrInvalid", err)
	}
}

func TestListingPages(t *testing.T) {
	// More shards than one page holds come back, once each, in order.
	s := serve(t)
	ctx := t.Context()
	const n = shardPage + 3617
	data := []byte{1}
	var index coding.StorageIndex
	for i := range n {
		id := store.ShardID{Index: index, Segment: uint32(i / 7), Shard: uint16(i % 7)}
		if err := s.PutShard(ctx, id, coding.HashOf(data), data); err != nil {
			t.Fatal(err)
		}
	}
	var got int
	var last store.ShardID
	for in, err := range s.ListShards(ctx, index) {
		if err != nil {
			t.Fatal(err)
		}
		if got > 0 && !shardAfter(in.ID, last) {
			t.Fatalf("listing out of order: %s after %s", in.ID, last)
		}
		last = in.ID
		got++
	}
	if got != n {
		t.Fatalf("listed %d shards over pages, want %d", got, n)
	}
}

func TestUnreachablePeer(t *testing.T) {
	cliID, _ := dht.NewIdentity(nil)
	cli, err := dht.NewTLSTransport(dht.TLSConfig{Identity: cliID})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s := New(cli, dht.Peer{Addr: "127.0.0.1:1"})
	if _, _, err := s.GetShard(ctx, store.ShardID{}); !errors.Is(err, dht.ErrUnreachable) {
		t.Fatalf("GetShard on a closed port: %v, want dht.ErrUnreachable", err)
	}
}

func FuzzRequests(f *testing.F) {
	// Whatever bytes a peer sends, every handler answers with a status and
	// never panics; a malformed body is store.ErrInvalid.
	backend, err := local.Open(f.TempDir(), local.Config{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { backend.Close() })
	var mux dht.Mux
	Register(&mux, backend)
	methods := []string{methodPutShard, methodGetShard, methodDeleteShard, methodListShards, methodMerge, methodGetRecord, methodRecordKeys, methodFindShard}
	f.Add(0, appendShardID(nil, store.ShardID{Segment: 1}))
	f.Add(4, appendEntries(make([]byte, 32), []store.Entry{{Name: "a", Value: []byte("v"), Version: 1}}))
	f.Add(3, make([]byte, 72))
	f.Add(6, make([]byte, 32))
	f.Fuzz(func(t *testing.T, m int, body []byte) {
		if m < 0 {
			m = -m
		}
		method := methods[m%len(methods)]
		b, err := mux.Dispatch(context.Background(), &dht.Request{Method: method, Body: body})
		if err != nil || len(b) == 0 {
			t.Fatalf("%s answered %v with %d bytes; want a status byte", method, err, len(b))
		}
		if b[0] > statusFailed {
			t.Fatalf("%s answered unknown status %d", method, b[0])
		}
	})
}

func FuzzEntryRoundTrip(f *testing.F) {
	f.Add("name", []byte("value"), uint64(7), int64(0), false)
	f.Add("t", []byte{}, uint64(1), int64(1e18), true)
	f.Fuzz(func(t *testing.T, name string, value []byte, version uint64, exp int64, deleted bool) {
		e := store.Entry{Name: name, Value: value, Version: version, Deleted: deleted}
		if exp > 0 {
			e.Expires = time.Unix(0, exp)
		}
		if e.Validate() != nil {
			return
		}
		r := reader{b: appendEntry(nil, e)}
		got := r.entry()
		if err := r.done(); err != nil || !got.Equal(e) || !bytes.Equal(got.Value, e.Value) && len(e.Value) > 0 {
			t.Fatalf("entry does not round-trip: %v, %+v vs %+v", err, got, e)
		}
	})
}
