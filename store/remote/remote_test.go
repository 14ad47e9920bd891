package remote

import (
	"bytes"
	"context"
	"encoding/binary"
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
// TLS, and returns a client's view of that store, from a Pool (merges
// batched). Everything stops at cleanup.
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
	return serveVia(t, func(r Registrar) Registrar { return olderPeer{r, methods} })
}

// serveVia is serve with the peer's methods registered through wrap(mux).
func serveVia(t *testing.T, wrap func(Registrar) Registrar) *Store {
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
	Register(wrap(&mux), backend)
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
	return NewPool(cli).Store(srv.Local())
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

// A peer from before store.record.mergemany gets a batch as single
// merges, and the pool sends it single merges from then on.
func TestMergeManyOnOlderPeer(t *testing.T) {
	s := serveWithout(t, methodMergeMany)
	k1, k2 := store.Key{1}, store.Key{2}
	e := store.Entry{Name: "n", Value: []byte("v"), Version: 1}
	rs := s.MergeRecords(t.Context(), []store.RecordMerge{{Key: k1, Entries: []store.Entry{e}}, {Key: k2, Entries: []store.Entry{e, e}}})
	for i, r := range rs {
		if r.Err != nil || r.Written != 1 {
			t.Errorf("merge %d on an older peer: wrote %d, %v; want 1, nil", i, r.Written, r.Err)
		}
	}
	if !s.q.old() {
		t.Error("the pool did not note that the peer lacks mergemany")
	}
	for _, k := range []store.Key{k1, k2} {
		if got, err := s.GetRecord(t.Context(), k); err != nil || len(got) != 1 {
			t.Errorf("record %s after the fallback: %v, %v; want the entry", k, got, err)
		}
	}
}

// gated is a Registrar whose first store.record.merge waits for release.
type gated struct {
	r       Registrar
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	batches chan int // merges per mergemany call
}

func (g *gated) Handle(method string, h dht.Handler) {
	switch method {
	case methodMerge:
		g.r.Handle(method, func(ctx context.Context, req *dht.Request) ([]byte, error) {
			g.once.Do(func() { close(g.entered); <-g.release })
			return h(ctx, req)
		})
	case methodMergeMany:
		g.r.Handle(method, func(ctx context.Context, req *dht.Request) ([]byte, error) {
			g.batches <- int(binary.BigEndian.Uint32(req.Body))
			return h(ctx, req)
		})
	default:
		g.r.Handle(method, h)
	}
}

// Merges to a peer made while another is in flight wait, and go together
// in one call when it ends.
func TestPoolBatchesMerges(t *testing.T) {
	g := &gated{entered: make(chan struct{}), release: make(chan struct{}), batches: make(chan int, 10)}
	s := serveVia(t, func(r Registrar) Registrar { g.r = r; return g })
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	mergeN := func(i int) {
		_, errs[i] = s.MergeRecord(t.Context(), store.Key{byte(i)}, []store.Entry{{Name: "n", Value: []byte{byte(i)}, Version: 1}})
	}
	wg.Go(func() { mergeN(0) })
	<-g.entered // merge 0 is in flight, held by the peer
	for i := 1; i < n; i++ {
		wg.Go(func() { mergeN(i) })
	}
	for s.q.co.Waiting() < n-1 {
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("merge %d: %v", i, err)
		}
	}
	close(g.batches)
	var sizes []int
	for b := range g.batches {
		sizes = append(sizes, b)
	}
	if !slices.Equal(sizes, []int{n - 1}) {
		t.Errorf("mergemany calls carried %v merges, want one call with the %d that waited", sizes, n-1)
	}
	for i := range n {
		if got, err := s.GetRecord(t.Context(), store.Key{byte(i)}); err != nil || len(got) != 1 || got[0].Value[0] != byte(i) {
			t.Fatalf("record %d: %v, %v", i, got, err)
		}
	}
}

func TestConformance(t *testing.T) {
	t.Run("Shards", func(t *testing.T) {
		storetest.TestShards(t, func(t *testing.T) store.Shards { return serve(t) })
	})
	t.Run("RecordsUnbatched", func(t *testing.T) {
		storetest.TestRecords(t, func(t *testing.T) store.Records { s := serve(t); return New(s.c, s.peer) })
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
