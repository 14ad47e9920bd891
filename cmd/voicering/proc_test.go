package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store/peer"
)

// binary is the voicering command under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "voicering-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "voicering")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building voicering for the process tests: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// procRing is a ring of `voicering node` processes on 127.0.0.1.
type procRing struct {
	t     *testing.T
	tick  time.Duration
	ca    string // the ring CA's certificate file, for a closed ring
	procs []*proc
}

type proc struct {
	dir, addr string
	id        dht.ID
	extra     []string // more node flags (--sip ...)
	cmd       *exec.Cmd
	log       *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcRing starts n node processes, each joining through the first.
func startProcRing(t *testing.T, n int, tick time.Duration) *procRing {
	t.Helper()
	r := &procRing{t: t, tick: tick}
	base := t.TempDir()
	t.Cleanup(r.killAll)
	for i := range n {
		dir := filepath.Join(base, fmt.Sprintf("peer-%d", i))
		id, err := dht.LoadIdentity(dir) // the key the node will use
		if err != nil {
			t.Fatal(err)
		}
		r.procs = append(r.procs, &proc{dir: dir, addr: freeAddr(t), id: id.ID()})
		r.start(i)
	}
	return r
}

func (r *procRing) start(i int) {
	r.t.Helper()
	p := r.procs[i]
	args := []string{"node", "--data", p.dir, "--listen", p.addr, "--tick", r.tick.String(), "--log-level", "info"}
	if r.ca != "" {
		args = append(args, "--ca", r.ca)
	}
	for j, q := range r.procs {
		if j != i && q.cmd != nil && len(args) < 16 {
			args = append(args, "--join", q.addr)
		}
	}
	args = append(args, p.extra...)
	p.log = &syncBuffer{}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		r.t.Fatalf("start peer %d: %v", i, err)
	}
}

// kill sends SIGKILL to peer i and waits for it to die.
func (r *procRing) kill(i int) {
	p := r.procs[i]
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill() // SIGKILL on Linux
	p.cmd.Wait()
	p.cmd = nil
}

func (r *procRing) killAll() {
	for i, p := range r.procs {
		if r.t.Failed() && p.cmd != nil {
			r.t.Logf("peer %d (%s) log:\n%s", i, p.id.Short(), lastLines(p.log.String(), 15))
		}
		r.kill(i)
	}
}

func lastLines(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}

func (r *procRing) live() []*proc {
	var out []*proc
	for _, p := range r.procs {
		if p.cmd != nil {
			out = append(out, p)
		}
	}
	return out
}

func (r *procRing) client() *peer.Client {
	r.t.Helper()
	var addrs []string
	for _, p := range r.live() {
		addrs = append(addrs, p.addr)
	}
	c, err := peer.NewClient(peer.ClientConfig{Peers: addrs})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it returns nil, failing at the deadline, and
// returns how long it took.
func waitFor(t *testing.T, what string, deadline time.Duration, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > deadline {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// converged checks, through each live peer's status, that its successor
// list is the next live peers in ID order, as far as it reaches.
func (r *procRing) converged(ctx context.Context, c *peer.Client) error {
	live := r.live()
	slices.SortFunc(live, func(a, b *proc) int { return a.id.Compare(b.id) })
	for i, p := range live {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(cctx, p.addr)
		cancel()
		if err != nil {
			return err
		}
		if st.ID != p.id {
			return fmt.Errorf("peer at %s is %s, want %s", p.addr, st.ID.Short(), p.id.Short())
		}
		want := min(len(live)-1, len(st.Successors), 8)
		if len(st.Successors) < min(len(live)-1, 8) {
			return fmt.Errorf("peer %s has %d successors", p.id.Short(), len(st.Successors))
		}
		for k := range want {
			if next := live[(i+1+k)%len(live)]; st.Successors[k].ID != next.id {
				return fmt.Errorf("peer %s: successor %d is %s, want %s", p.id.Short(), k+1, st.Successors[k].ID.Short(), next.id.Short())
			}
		}
	}
	return nil
}

// owner returns the live peer that owns key: the first clockwise from it.
func (r *procRing) owner(key dht.ID) *proc {
	live := r.live()
	slices.SortFunc(live, func(a, b *proc) int { return a.id.Compare(b.id) })
	for _, p := range live {
		if p.id.Compare(key) >= 0 {
			return p
		}
	}
	return live[0]
}

// lookupsCorrect checks that a lookup started at every live peer finds the
// true owner of each key.
func (r *procRing) lookupsCorrect(ctx context.Context, keys []dht.ID) error {
	for _, p := range r.live() {
		c, err := peer.NewClient(peer.ClientConfig{Peers: []string{p.addr}})
		if err != nil {
			return err
		}
		for _, k := range keys {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			got, _, err := c.Lookup(cctx, k, 1)
			cancel()
			if err != nil {
				c.Close()
				return fmt.Errorf("lookup of %s from %s: %w", k.Short(), p.id.Short(), err)
			}
			if want := r.owner(k); got[0].ID != want.id {
				c.Close()
				return fmt.Errorf("lookup of %s from %s found %s, want %s", k.Short(), p.id.Short(), got[0].ID.Short(), want.id.Short())
			}
		}
		c.Close()
	}
	return nil
}

// runCLI runs the voicering binary with args and returns stdout, stderr
// and the exit code.
func runCLI(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run voicering %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}
