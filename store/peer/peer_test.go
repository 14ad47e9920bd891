package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
	"github.com/voicering/voicering/store/ring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRecordsAcrossPeers(t *testing.T) {
	c := newCluster(t, 5)
	ctx := t.Context()
	key := store.Key(dht.Key("mailbox:alice@example.org"))

	// Two peers write different entries of one record at the same time.
	errs := make(chan error, 2)
	go func() {
		errs <- c.peers[1].p.Records().Put(ctx, key, store.Entry{Name: "msg-1", Value: []byte("from bob")})
	}()
	go func() {
		errs <- c.peers[2].p.Records().Put(ctx, key, store.Entry{Name: "msg-2", Value: []byte("from carol")})
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}

	// A third peer reads both.
	got, err := c.peers[4].p.Records().Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(got) != 2 || got[0].Name != "msg-1" || got[1].Name != "msg-2" {
		t.Fatalf("Get = %v, want msg-1 and msg-2", got)
	}
	// Both entries are on every replica, in its own store.
	set, err := c.peers[0].p.Records().Replicas(ctx, key, 0)
	if err != nil || len(set) != 3 {
		t.Fatalf("Replicas = %v, %v; want 3 peers", set, err)
	}
	for _, r := range set {
		for _, p := range c.live() {
			if p.Self().ID != r.ID {
				continue
			}
			es, err := p.Store().GetRecord(ctx, key)
			if err != nil || len(es) != 2 {
				t.Errorf("replica %s holds %v, %v; want both entries", r.ID.Short(), es, err)
			}
		}
	}
	// A delete is seen from everywhere.
	if err := c.peers[3].p.Records().Delete(ctx, key, "msg-1"); err != nil {
		t.Fatal(err)
	}
	got, err = c.peers[0].p.Records().Get(ctx, key)
	if err != nil || len(got) != 1 || got[0].Name != "msg-2" {
		t.Fatalf("after Delete, Get = %v, %v; want only msg-2", got, err)
	}
}

func TestObjectRoundTrips(t *testing.T) {
	c := newCluster(t, 8)
	ctx := t.Context()
	for _, tt := range []struct {
		name string
		size int
	}{
		{"empty", 0}, {"one byte", 1}, {"odd", 100_003}, {"voicemail", 480_000}, {"multi-segment", 3*coding.DefaultSegmentSize + 12345},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := randomBytes(uint64(tt.size), tt.size)
			cp, m, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(data), coding.Params{ContentType: "application/octet-stream"})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if m.Size != int64(tt.size) {
				t.Errorf("manifest size %d, want %d", m.Size, tt.size)
			}
			var out bytes.Buffer
			if err := c.peers[5].p.Objects().Get(ctx, cp, &out); err != nil {
				t.Fatalf("Get through another peer: %v", err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("got %d bytes back, want the %d put", out.Len(), len(data))
			}
		})
	}
}

// Repair and hand-off are held off for the whole test. The object must
// survive Total−Needed lost placement peers by its coding alone, right after
// they die; and the one loss too many must stay a loss: with repair on, a
// pass run between the kills (Settle after the ring notices a death, or
// any Period tick) rebuilds the lost shards on the live peers that moved
// into the placement set, and the third kill then leaves Needed+1 shards.
func TestObjectSurvivesPeerLoss(t *testing.T) {
	c := newClusterWith(t, 8, func(cfg *Config) {
		cfg.Maintain.Settle, cfg.Maintain.Period = time.Hour, time.Hour
	})
	ctx := t.Context()
	data := randomBytes(9, 480_000)
	cp, m, victims := putVictims(t, c, data, 3) // 4-of-6: two to lose, one more to fail
	if len(m.ShardHashes) != 1 {
		t.Fatalf("object has %d segments; the victims are segment 0's placement peers, so the test needs one", len(m.ShardHashes))
	}
	// What the live peers hold is checked at each step, so that the gets'
	// outcomes follow from it and not from timing.
	if n := liveShards(t, c, cp, m, 0); n != m.Scheme.Total {
		t.Fatalf("after the put, %d distinct good shards of segment 0 on live peers, want %d", n, m.Scheme.Total)
	}
	for _, i := range victims[:m.Scheme.Parity()] {
		c.kill(i)
	}
	if n := liveShards(t, c, cp, m, 0); n != m.Scheme.Needed {
		t.Fatalf("with %d placement peers dead, %d distinct good shards of segment 0 on live peers, want %d", m.Scheme.Parity(), n, m.Scheme.Needed)
	}
	reader := c.live()[0]
	var out bytes.Buffer
	if err := reader.Objects().Get(ctx, cp, &out); err != nil {
		t.Fatalf("Get with %d placement peers dead: %v", m.Scheme.Parity(), err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("wrong bytes after peer loss")
	}
	// One more loss is one too many: a clean error that says so.
	c.kill(victims[m.Scheme.Parity()])
	if n := liveShards(t, c, cp, m, 0); n != m.Scheme.Needed-1 {
		t.Fatalf("with %d placement peers dead, %d distinct good shards of segment 0 on live peers, want %d", m.Scheme.Parity()+1, n, m.Scheme.Needed-1)
	}
	reader = c.live()[0]
	err := reader.Objects().Get(ctx, cp, io.Discard)
	var se *coding.ShardError
	if !errors.As(err, &se) || se.Good != m.Scheme.Needed-1 || se.Needed != m.Scheme.Needed {
		t.Fatalf("Get with %d placement peers dead: %v; want a ShardError with %d of %d good shards", m.Scheme.Parity()+1, err, m.Scheme.Needed-1, m.Scheme.Needed)
	}
}

// liveShards returns how many distinct shards of segment s matching the
// manifest the live peers' stores hold, wherever on the ring.
func liveShards(t *testing.T, c *cluster, cp coding.Cap, m *coding.Manifest, s int) int {
	t.Helper()
	seen := map[uint16]bool{}
	for _, p := range c.live() {
		for in, err := range p.Store().ListShards(t.Context(), cp.StorageIndex()) {
			if err != nil {
				t.Fatalf("list shards of %s: %v", p.Self().ID.Short(), err)
			}
			if in.ID.Segment == uint32(s) && int(in.ID.Shard) < m.Scheme.Total && in.Hash == m.ShardHashes[s][in.ID.Shard] {
				seen[in.ID.Shard] = true
			}
		}
	}
	return len(seen)
}

func TestCorruptShardsAreCaught(t *testing.T) {
	c := newCluster(t, 7)
	ctx := t.Context()
	data := randomBytes(3, 300_000)
	cp, m, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(data), coding.Params{Scheme: coding.Scheme{Needed: 3, Total: 5}})
	if err != nil {
		t.Fatal(err)
	}
	// On parity-many peers, replace the shard with garbage stored under
	// its own (valid) hash: the store is fine with it, the reader is not.
	corrupted := 0
	for _, p := range c.live() {
		if corrupted == m.Scheme.Parity() {
			break
		}
		for in, err := range p.Store().ListShards(ctx, cp.StorageIndex()) {
			if err != nil {
				t.Fatal(err)
			}
			junk := randomBytes(uint64(in.ID.Shard), int(in.Size))
			if err := p.Store().DeleteShard(ctx, in.ID); err != nil {
				t.Fatal(err)
			}
			if err := p.Store().PutShard(ctx, in.ID, coding.HashOf(junk), junk); err != nil {
				t.Fatal(err)
			}
			corrupted++
			break
		}
	}
	var out bytes.Buffer
	if err := c.peers[6].p.Objects().Get(ctx, cp, &out); err != nil {
		t.Fatalf("Get with %d corrupt shards: %v", corrupted, err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("wrong bytes with corrupt shards")
	}
	// Repair finds the shards that do not match the manifest and replaces
	// them with rebuilt good ones.
	c.waitFor("corrupt shards replaced", 60*time.Second, func() error {
		return wholeOnPlacement(ctx, c, cp, m)
	})
}

// wholeOnPlacement checks that every segment of the object has one distinct
// shard matching the manifest on each of its placement peers.
func wholeOnPlacement(ctx context.Context, c *cluster, cp coding.Cap, m *coding.Manifest) error {
	for s := range m.ShardHashes {
		peers, _, err := c.live()[0].Node().Lookup(ctx, ring.PlacementKey(cp.StorageIndex(), s), m.Scheme.Total)
		if err != nil {
			return err
		}
		seen := map[uint16]bool{}
		for _, p := range peers {
			for _, q := range c.live() {
				if q.Self().ID != p.ID {
					continue
				}
				for in, err := range q.Store().ListShards(ctx, cp.StorageIndex()) {
					if err != nil {
						return err
					}
					if in.ID.Segment != uint32(s) {
						continue
					}
					if in.Hash != m.ShardHashes[s][in.ID.Shard] {
						return fmt.Errorf("segment %d shard %d on %s does not match the manifest", s, in.ID.Shard, p.ID.Short())
					}
					seen[in.ID.Shard] = true
				}
			}
		}
		if len(seen) != m.Scheme.Total {
			return fmt.Errorf("segment %d: %d distinct good shards on its placement peers, want %d", s, len(seen), m.Scheme.Total)
		}
	}
	return nil
}

func TestRemove(t *testing.T) {
	c := newCluster(t, 6)
	ctx := t.Context()
	cp, _, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(randomBytes(1, 5000)), coding.Params{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.peers[2].p.Objects().Remove(ctx, cp); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	var out bytes.Buffer
	if err := c.peers[4].p.Objects().Get(ctx, cp, &out); !errors.Is(err, ring.ErrNotFound) {
		t.Fatalf("Get after Remove: %v, want ring.ErrNotFound", err)
	}
	for i, p := range c.live() {
		for in, err := range p.Store().ListShards(ctx, cp.StorageIndex()) {
			t.Errorf("peer %d still holds %v (%v)", i, in.ID, err)
		}
	}
}

func TestTooFewPeers(t *testing.T) {
	c := newCluster(t, 3)
	_, _, err := c.peers[0].p.Objects().Put(t.Context(), bytes.NewReader([]byte("x")), coding.Params{Scheme: coding.Scheme{Needed: 4, Total: 6}})
	if !errors.Is(err, ring.ErrTooFewPeers) {
		t.Fatalf("Put of 4-of-6 on 3 peers: %v, want ring.ErrTooFewPeers", err)
	}
}

func TestRepairAfterPermanentLoss(t *testing.T) {
	c := newCluster(t, 8)
	ctx := t.Context()
	data := randomBytes(5, 2*coding.DefaultSegmentSize)
	cp, m, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(data), coding.Params{Scheme: coding.Scheme{Needed: 3, Total: 5}})
	if err != nil {
		t.Fatal(err)
	}
	// Lose a peer holding a shard of segment 0, for good.
	place, _, _ := c.peers[0].p.Node().Lookup(ctx, ring.PlacementKey(cp.StorageIndex(), 0), m.Scheme.Total)
	for i, mb := range c.peers {
		if mb.p.Self().ID == place[1].ID {
			c.kill(i)
		}
	}
	c.waitConverged()
	// Every segment gets back to one distinct shard on each of its
	// placement peers, without anyone asking.
	c.waitFor("full redundancy", 60*time.Second, func() error { return wholeOnPlacement(ctx, c, cp, m) })
	var out bytes.Buffer
	if err := c.live()[2].Objects().Get(ctx, cp, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Get after repair: %v", err)
	}
}

func TestStoragePeersHoldNoPlaintext(t *testing.T) {
	c := newCluster(t, 6)
	ctx := t.Context()
	pattern := bytes.Repeat([]byte("VOICEMAIL-PLAINTEXT-MARKER."), 20000)
	if _, _, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(pattern), coding.Params{}); err != nil {
		t.Fatal(err)
	}
	c.stopAll() // flush everything to disk
	for i, mb := range c.peers {
		err := filepath.WalkDir(mb.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte("PLAINTEXT-MARKER")) {
				t.Errorf("peer %d: %s holds plaintext", i, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestManifestSurvivesAsManyLossesAsShards(t *testing.T) {
	// 4-of-6 survives two lost peers; so must its manifest, even when both
	// are replicas of it (a majority of R = 3).
	c := newCluster(t, 8)
	ctx := t.Context()
	data := randomBytes(11, 200_000)
	cp, _, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(data), coding.Params{Scheme: coding.Scheme{Needed: 4, Total: 6}})
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.peers[0].p.Records().Replicas(ctx, store.Key(cp.StorageIndex()), 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas[:2] {
		for i, mb := range c.peers {
			if mb.p != nil && mb.p.Self().ID == r.ID {
				c.kill(i)
			}
		}
	}
	var out bytes.Buffer
	if err := c.live()[0].Objects().Get(ctx, cp, &out); err != nil {
		t.Fatalf("Get with 2 of the manifest's 3 replicas dead: %v", err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("wrong bytes")
	}
}

func TestGracefulLeaveHandsOver(t *testing.T) {
	// Repair and hand-off are held off, so only Leave can explain the data
	// reaching its new homes.
	c := newClusterWith(t, 8, func(cfg *Config) {
		cfg.Maintain.Settle, cfg.Maintain.Period = time.Hour, time.Hour
	})
	ctx := t.Context()
	data := randomBytes(21, 300_000)
	cp, m, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(data), coding.Params{Scheme: coding.Scheme{Needed: 3, Total: 5}})
	if err != nil {
		t.Fatal(err)
	}
	// The leaving peer holds a shard of segment 0; the record is one it is
	// a replica of.
	place, _, err := c.peers[0].p.Node().Lookup(ctx, ring.PlacementKey(cp.StorageIndex(), 0), m.Scheme.Total)
	if err != nil {
		t.Fatal(err)
	}
	leaver := slices.IndexFunc(c.peers, func(mb *member) bool { return mb.p.Self().ID == place[1].ID })
	var key store.Key
	for i := 0; ; i++ {
		key = store.Key(dht.Key(fmt.Sprintf("mailbox:leave%d@example.org", i)))
		reps, err := c.peers[0].p.Records().Replicas(ctx, key, 0)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(reps, func(p dht.Peer) bool { return p.ID == place[1].ID }) {
			break
		}
	}
	if err := c.peers[0].p.Records().Put(ctx, key, store.Entry{Name: "m", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := c.peers[leaver].p.Leave(lctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	cancel()
	c.kill(leaver)
	c.waitConverged()
	if err := wholeOnPlacement(ctx, c, cp, m); err != nil {
		t.Fatalf("after a graceful leave: %v", err)
	}
	reps, err := c.live()[0].Records().Replicas(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		for _, q := range c.live() {
			if q.Self().ID == r.ID {
				if _, err := q.Store().GetRecord(ctx, key); err != nil {
					t.Errorf("replica %s lacks the record after the leave: %v", r.ID.Short(), err)
				}
			}
		}
	}
}

// Once the ring has noticed dead placement peers, the live ones sit at
// other positions than the shards they hold: a get still reads each shard
// with one request (store.ShardFinder), which Counters().ShardsMoved shows.
func TestGetAfterRingShifted(t *testing.T) {
	// Repair held off, so the shards stay where the put left them.
	c := newClusterWith(t, 9, func(cfg *Config) {
		cfg.Maintain.Settle, cfg.Maintain.Period = time.Hour, time.Hour
	})
	ctx := t.Context()
	data := randomBytes(23, 480_000)
	// The first Parity placement peers outside the manifest's replicas:
	// the first of them is at position Total−2 at the latest, so at least
	// the last placement peer moves up a position.
	cp, m, victims := putVictims(t, c, data, 2)
	victims = victims[:m.Scheme.Parity()]
	for _, i := range victims {
		c.kill(i)
	}
	c.waitConverged()
	reader := c.live()[0]
	before := reader.Objects().Counters().ShardsMoved
	var out bytes.Buffer
	if err := reader.Objects().Get(ctx, cp, &out); err != nil {
		t.Fatalf("Get on the shifted ring: %v", err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("Get on the shifted ring: wrong bytes")
	}
	if moved := reader.Objects().Counters().ShardsMoved - before; moved == 0 {
		t.Errorf("Get on the shifted ring found every shard at its own position; want some found by FindShard on another")
	}
}

// A peer started with an AnswerDelay can be switched to answer at once
// and back (the benchmark's slow peer, in alternation with a healthy one).
func TestSetAnswerDelay(t *testing.T) {
	const delay = 5 * time.Second
	c := newClusterWith(t, 2, func(cfg *Config) { cfg.AnswerDelay = delay })
	ctx := t.Context()
	slow, asker := c.peers[1].p, c.peers[0].p
	id := store.ShardID{Segment: 1}
	data := []byte("a shard on the slow peer")
	if err := slow.Store().PutShard(ctx, id, coding.HashOf(data), data); err != nil {
		t.Fatal(err)
	}
	get := func() error {
		cctx, cancel := context.WithTimeout(ctx, delay/2)
		defer cancel()
		_, _, err := asker.Dial(slow.Self()).GetShard(cctx, id)
		return err
	}
	if err := get(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetShard from a peer delaying %v, with %v to wait: %v, want the deadline exceeded", delay, delay/2, err)
	}
	if !slow.SetAnswerDelay(0) {
		t.Fatal("SetAnswerDelay on a peer started with a delay reported false")
	}
	if err := get(); err != nil {
		t.Fatalf("GetShard with the delay off: %v", err)
	}
	slow.SetAnswerDelay(delay)
	if err := get(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetShard with the delay on again: %v, want the deadline exceeded", err)
	}
	plain := newCluster(t, 1).peers[0].p
	if plain.SetAnswerDelay(time.Second) {
		t.Error("SetAnswerDelay on a peer started without a delay reported true")
	}
}

// putVictims puts data coded 4-of-6 through peer 0 and returns its cap,
// manifest, and the peers (indexes into c.peers) holding segment 0's
// shards but none of the manifest's replicas, in placement order, at least
// want of them: killing those loses shards, not the manifest.
func putVictims(t *testing.T, c *cluster, data []byte, want int) (coding.Cap, *coding.Manifest, []int) {
	t.Helper()
	ctx := t.Context()
	cp, m, err := c.peers[0].p.Objects().Put(ctx, bytes.NewReader(data), coding.Params{Scheme: coding.Scheme{Needed: 4, Total: 6}})
	if err != nil {
		t.Fatal(err)
	}
	place, _, err := c.peers[0].p.Node().Lookup(ctx, ring.PlacementKey(cp.StorageIndex(), 0), m.Scheme.Total)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.peers[0].p.Records().Replicas(ctx, store.Key(cp.StorageIndex()), 0)
	if err != nil {
		t.Fatal(err)
	}
	var victims []int
	for _, p := range place {
		if !slices.ContainsFunc(replicas, func(r dht.Peer) bool { return r.ID == p.ID }) {
			victims = append(victims, slices.IndexFunc(c.peers, func(mb *member) bool { return mb.p != nil && mb.p.Self().ID == p.ID }))
		}
	}
	if len(victims) < want {
		t.Fatalf("only %d placement peers outside the manifest's replicas; the test needs %d", len(victims), want)
	}
	return cp, m, victims
}
