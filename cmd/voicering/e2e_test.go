package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
	"github.com/voicering/voicering/store/peer"
	"github.com/voicering/voicering/store/ring"
)

// Scenario tests on real `voicering node` processes over mutual TLS on
// 127.0.0.1, killed with SIGKILL. The figures they log (time to heal) are
// recorded in BENCHMARKS.md; nothing here asserts a duration.

func TestRingOfSixteenProcesses(t *testing.T) {
	const n, killed = 16, 5
	r := startProcRing(t, n, 100*time.Millisecond)
	c := r.client()
	ctx := t.Context()
	took := waitFor(t, "16 peers to converge", 90*time.Second, func() error { return r.converged(ctx, c) })
	t.Logf("16 processes converged %s after the last started", took.Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(16, 5))
	keys := make([]dht.ID, 24)
	for i := range keys {
		keys[i] = dht.Key(fmt.Sprintf("test:key:%d", rng.Uint64()))
	}
	settle := waitFor(t, "every lookup to reach the right owner", 60*time.Second, func() error { return r.lookupsCorrect(ctx, keys) })
	t.Logf("FIGURE: lookups from every peer correct %s after that", settle.Round(time.Millisecond))

	// Records written before the kills.
	const records = 40
	recKey := func(i int) store.Key { return store.Key(dht.Key(fmt.Sprintf("aor:sip:user%d@example.org", i))) }
	for i := range records {
		if err := c.Records().Put(ctx, recKey(i), store.Entry{Name: "binding", Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("put record %d: %v", i, err)
		}
	}

	// SIGKILL five peers at once, spread around the ring: every third peer
	// in ID order from a random start, so no three consecutive peers (a
	// record's replica set, R = 3) lose more than one. Five random kills
	// would lose all three replicas of some record about half the time
	// with 40 records: that is what R = 3 means, not a fault.
	byID := make([]int, n)
	for i := range byID {
		byID[i] = i
	}
	slices.SortFunc(byID, func(a, b int) int { return r.procs[a].id.Compare(r.procs[b].id) })
	offset := rng.IntN(n)
	var victims []int
	for k := range killed {
		victims = append(victims, byID[(offset+3*k)%n])
	}
	for _, i := range victims {
		r.kill(i)
	}
	c = r.client()
	heal := waitFor(t, "lookups to route around the dead", 90*time.Second, func() error { return r.lookupsCorrect(ctx, keys) })
	t.Logf("FIGURE: every lookup from every live peer reached the right owner %s after SIGKILL of %d of %d peers", heal.Round(time.Millisecond), killed, n)
	conv := waitFor(t, "successor lists to converge", 90*time.Second, func() error { return r.converged(ctx, c) })
	t.Logf("FIGURE: successor lists converged %s after that", conv.Round(time.Millisecond))

	// Every record is still readable, and gets back to R = 3 copies.
	for i := range records {
		es, err := c.Records().Get(ctx, recKey(i))
		if err != nil || len(es) != 1 || string(es[0].Value) != fmt.Sprint(i) {
			t.Fatalf("record %d after the kills: %v, %v", i, es, err)
		}
	}
	restore := waitFor(t, "R copies of every record", 90*time.Second, func() error {
		for i := range records {
			reps, err := c.Records().Replicas(ctx, recKey(i), 3)
			if err != nil {
				return err
			}
			for _, p := range reps {
				if _, err := c.Dial(p).GetRecord(ctx, recKey(i)); err != nil {
					return fmt.Errorf("record %d on replica %s: %w", i, p.ID.Short(), err)
				}
			}
		}
		return nil
	})
	t.Logf("FIGURE: every record back on its 3 replicas %s after the ring converged", restore.Round(time.Millisecond))

	// The five come back with their data and identities, and rejoin.
	for _, i := range victims {
		r.start(i)
	}
	c = r.client()
	back := waitFor(t, "the restarted peers to rejoin", 90*time.Second, func() error { return r.converged(ctx, c) })
	t.Logf("FIGURE: the 5 restarted peers rejoined (all successor lists true) in %s", back.Round(time.Millisecond))
	// Peers that remembered them as dead take them back within DeadMemory.
	waitFor(t, "lookups to reach the restarted peers", 60*time.Second, func() error { return r.lookupsCorrect(ctx, keys) })
}

// writeRandomFile writes n seeded random bytes to a file and returns its
// path and SHA-256.
func writeRandomFile(t *testing.T, dir string, n int64, seed uint64) (string, [32]byte) {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("obj-%d.bin", n))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{byte(seed)})
	if _, err := io.CopyN(io.MultiWriter(f, h), src, n); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, [32]byte(h.Sum(nil))
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestObjectsThroughTheCLI(t *testing.T) {
	r := startProcRing(t, 8, 100*time.Millisecond)
	c := r.client()
	ctx := t.Context()
	waitFor(t, "8 peers to converge", 90*time.Second, func() error { return r.converged(ctx, c) })
	dir := t.TempDir()

	caps := map[int64]string{}
	for _, size := range []int64{0, 1, 100_003, 480_000, 3<<20 + 17, 256 << 20} {
		t.Run(fmt.Sprintf("%d bytes", size), func(t *testing.T) {
			path, sum := writeRandomFile(t, dir, size, uint64(size))
			out, errOut, code := runCLI(t, nil, "put", "--peer", r.procs[0].addr, path)
			if code != 0 {
				t.Fatalf("put exit %d: %s", code, errOut)
			}
			if errOut != "" {
				t.Errorf("put wrote to stderr without a terminal: %q", errOut)
			}
			cp := strings.TrimSpace(out)
			caps[size] = cp
			got := filepath.Join(dir, "got.bin")
			if _, errOut, code := runCLI(t, nil, "get", cp, "-o", got, "--peer", r.procs[5].addr); code != 0 {
				t.Fatalf("get exit %d: %s", code, errOut)
			}
			if fileHash(t, got) != sum {
				t.Fatal("got different bytes back")
			}
		})
	}

	// rm, then get: exit 3 (on the whole ring: a 4-of-6 object survives
	// two lost peers, and more are killed below).
	if _, errOut, code := runCLI(t, nil, "rm", caps[1], "--peer", r.procs[2].addr); code != 0 {
		t.Fatalf("rm exit %d: %s", code, errOut)
	}
	if _, errOut, code := runCLI(t, nil, "get", caps[1], "--peer", r.procs[2].addr); code != 3 || !strings.Contains(errOut, "no such object") {
		t.Fatalf("get after rm: exit %d, %q; want 3 and no such object", code, errOut)
	}

	// SIGKILL total−needed (2) placement peers of the voicemail-sized object,
	// keeping one replica of its manifest alive.
	cp, err := coding.ParseCap(caps[480_000])
	if err != nil {
		t.Fatal(err)
	}
	place, _, err := c.Lookup(ctx, ring.PlacementKey(cp.StorageIndex(), 0), 6)
	if err != nil {
		t.Fatal(err)
	}
	manifestHolder, _, err := c.Lookup(ctx, dht.ID(cp.StorageIndex()), 1)
	if err != nil {
		t.Fatal(err)
	}
	var victims []int
	for _, p := range place {
		if p.ID == manifestHolder[0].ID {
			continue
		}
		victims = append(victims, slices.IndexFunc(r.procs, func(q *proc) bool { return q.id == p.ID }))
	}
	for _, i := range victims[:2] {
		r.kill(i)
	}
	alive := r.live()[0].addr
	out, errOut, code := runCLI(t, nil, "get", caps[480_000], "--peer", alive)
	if code != 0 {
		t.Fatalf("get with 2 of 6 placement peers SIGKILLed: exit %d: %s", code, errOut)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "obj-480000.bin"))
	if !bytes.Equal([]byte(out), want) {
		t.Fatal("get to stdout after the kills gave different bytes")
	}
	// One more is one too many: exit 1 and a message naming the shortfall.
	r.kill(victims[2])
	alive = r.live()[0].addr
	_, errOut, code = runCLI(t, nil, "get", caps[480_000], "--peer", alive, "-o", filepath.Join(dir, "never.bin"))
	if code != 1 || !strings.Contains(errOut, "3 good shards of 4 needed") {
		t.Fatalf("get with 3 of 6 placement peers dead: exit %d, %q; want exit 1 saying 3 good shards of 4 needed", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "never.bin")); !os.IsNotExist(err) {
		t.Errorf("a failed get left a file behind (%v)", err)
	}

}

func TestClosedRing(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, errOut, code := runCLI(t, nil, "ca", "init", "--dir", caDir); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	r := &procRing{t: t, tick: 100 * time.Millisecond, ca: filepath.Join(caDir, dht.CACertFile)}
	t.Cleanup(r.killAll)
	for i := range 4 {
		pdir := filepath.Join(dir, fmt.Sprintf("peer-%d", i))
		if i < 3 { // the fourth gets no certificate
			if _, errOut, code := runCLI(t, nil, "ca", "issue", "--ca-dir", caDir, "--data", pdir); code != 0 {
				t.Fatalf("ca issue: %s", errOut)
			}
		}
		id, err := dht.LoadIdentity(pdir)
		if err != nil {
			t.Fatal(err)
		}
		r.procs = append(r.procs, &proc{dir: pdir, addr: freeAddr(t), id: id.ID()})
	}
	for i := range 3 {
		r.start(i)
	}
	idDir := filepath.Join(dir, "client")
	if _, errOut, code := runCLI(t, nil, "ca", "issue", "--ca-dir", caDir, "--data", idDir); code != 0 {
		t.Fatalf("ca issue for the client: %s", errOut)
	}
	closed := []string{"--ca", r.ca, "--identity", idDir}

	// A certified client stores and reads through the closed ring.
	var cp string
	waitFor(t, "a put through the closed ring", 60*time.Second, func() error {
		out, errOut, code := runCLI(t, []byte("closed ring"), append([]string{"put", "-", "--peer", r.procs[0].addr, "--needed", "2", "--total", "3"}, closed...)...)
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		cp = strings.TrimSpace(out)
		return nil
	})
	if out, errOut, code := runCLI(t, nil, append([]string{"get", cp, "--peer", r.procs[1].addr}, closed...)...); code != 0 || out != "closed ring" {
		t.Fatalf("get through the closed ring: exit %d %q %s", code, out, errOut)
	}
	// A client without a certificate is refused, and told why.
	if _, errOut, code := runCLI(t, nil, "get", cp, "--peer", r.procs[1].addr, "--ca", r.ca); code != 1 || !strings.Contains(errOut, "not admitted") {
		t.Fatalf("uncertified client: exit %d, %q; want a refusal saying not admitted", code, errOut)
	}
	// An uncertified peer is refused when it tries to join: the ring's
	// peers say so in their logs, and it never appears among them.
	r.start(3)
	refusal := "not admitted to the ring: node " + r.procs[3].id.String()[:8]
	waitFor(t, "the ring to refuse the uncertified peer", 60*time.Second, func() error {
		for _, p := range r.procs[:3] {
			if strings.Contains(p.log.String(), refusal) {
				return nil
			}
		}
		return fmt.Errorf("no ring peer has logged %q yet", refusal)
	})
	c, err := peer.NewClient(peer.ClientConfig{Peers: []string{r.procs[0].addr}, CA: mustCA(t, r.ca), Identity: mustIdentity(t, idDir)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(t.Context(), r.procs[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Successors {
		if s.ID == r.procs[3].id {
			t.Fatalf("the uncertified peer %s is in the closed ring", s.ID.Short())
		}
	}
}

func mustCA(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := dht.ReadCACert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustIdentity(t *testing.T, dir string) *dht.Identity {
	t.Helper()
	id, err := dht.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
