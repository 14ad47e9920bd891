package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cluster is a ring of `voicering node` processes that the benchmark owns:
// it starts them, kills and restarts them, and on Close kills every one
// still running and waits for it, so none outlives the benchmark.
type cluster struct {
	bin    string
	dir    string // data and logs of the peers live under it
	logger *slog.Logger

	mu    sync.Mutex
	nodes []*node
	wg    sync.WaitGroup // one waiter per started process
}

// node is one peer: its fixed data directory and address, and the process
// running it, if any.
type node struct {
	i    int
	dir  string
	log  string
	addr string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	err  error         // its exit status, once done is closed
	slow time.Duration // the answer delay it runs with
}

func (n *node) String() string { return fmt.Sprintf("peer %d (%s)", n.i, n.addr) }

func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func newCluster(bin, dir string, logger *slog.Logger) *cluster {
	return &cluster{bin: bin, dir: dir, logger: logger}
}

// start launches peers peers: the first starts a ring, the others join it.
func (c *cluster) start(ctx context.Context, peers int) error {
	for i := range peers {
		n := &node{
			i:   i,
			dir: filepath.Join(c.dir, "data", fmt.Sprintf("p%02d", i)),
			log: filepath.Join(c.dir, "logs", fmt.Sprintf("p%02d.log", i)),
		}
		c.mu.Lock()
		c.nodes = append(c.nodes, n)
		c.mu.Unlock()
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
		return fmt.Errorf("bench: peer logs: %w", err)
	}
	// The first peer is the ring every other one joins through.
	if err := c.launchFresh(ctx, c.nodes[0], nil); err != nil {
		return err
	}
	join := []string{c.nodes[0].addr}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for _, n := range c.nodes[1:] {
		wg.Go(func() { errs[n.i] = c.launchFresh(ctx, n, join) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// launchFresh starts a new peer on a free port, trying another port if the
// one picked was taken meanwhile.
func (c *cluster) launchFresh(ctx context.Context, n *node, join []string) error {
	var err error
	for range 3 {
		if n.addr, err = freeAddr(); err != nil {
			return fmt.Errorf("bench: %s: pick a free port on 127.0.0.1: %w", n, err)
		}
		if err = c.launch(ctx, n, join, 0); err == nil || !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

var errAddrInUse = errors.New("address in use")

// launch starts n's process and returns once it accepts connections.
func (c *cluster) launch(ctx context.Context, n *node, join []string, delay time.Duration) error {
	if n.running() {
		return fmt.Errorf("bench: %s is already running", n)
	}
	args := []string{"node", "--data", n.dir, "--listen", n.addr, "--log-level", "warn"}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	if delay > 0 {
		args = append(args, "--answer-delay", delay.String())
	}
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("bench: %s: log file: %w", n, err)
	}
	fmt.Fprintf(logf, "=== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("bench: %s: cannot start %s: %w (is it the voicering binary?)", n, c.bin, err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	n.cmd, n.done, n.err, n.slow = cmd, done, nil, delay
	c.mu.Unlock()
	c.wg.Go(func() {
		err := cmd.Wait()
		logf.Close()
		c.mu.Lock()
		n.err = err
		c.mu.Unlock()
		close(done)
	})
	if err := c.waitListening(ctx, n); err != nil {
		c.kill(n)
		return err
	}
	c.logger.Debug("peer started", "peer", n.i, "addr", n.addr, "pid", cmd.Process.Pid)
	return nil
}

// waitListening returns once n's address accepts TCP connections, or with
// an error quoting its log if the process exited first.
func (c *cluster) waitListening(ctx context.Context, n *node) error {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp", n.addr)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-n.done:
			tail := logTail(n.log, 5)
			if strings.Contains(tail, "address already in use") {
				return fmt.Errorf("bench: %s: %w: another process took the port; %s", n, errAddrInUse, tail)
			}
			return fmt.Errorf("bench: %s exited before listening (%v); its log %s ends:\n%s", n, n.err, n.log, tail)
		case <-deadline.C:
			return fmt.Errorf("bench: %s does not accept connections 30s after starting; see its log %s", n, n.log)
		case <-tick.C:
		}
	}
}

// kill sends SIGKILL to n's process and waits for it to exit.
func (c *cluster) kill(n *node) {
	if !n.running() {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// restart starts a killed peer again with its data directory and address,
// joining through the running peers.
func (c *cluster) restart(ctx context.Context, n *node, delay time.Duration) error {
	if err := c.launch(ctx, n, c.joinAddrs(n), delay); err != nil {
		if errors.Is(err, errAddrInUse) {
			return fmt.Errorf("%w (a restarted peer must keep its address)", err)
		}
		return err
	}
	return nil
}

// joinAddrs returns up to three running peers other than n.
func (c *cluster) joinAddrs(n *node) []string {
	var out []string
	for _, o := range c.nodes {
		if o != n && o.running() && len(out) < 3 {
			out = append(out, o.addr)
		}
	}
	return out
}

// addrs returns the addresses of all peers, running or not.
func (c *cluster) addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// live returns the running peers.
func (c *cluster) live() []*node {
	var out []*node
	for _, n := range c.nodes {
		if n.running() {
			out = append(out, n)
		}
	}
	return out
}

// unexpectedExit returns an error naming the first peer that exited
// without being killed, or nil.
func (c *cluster) unexpectedExit(want []*node) error {
	for _, n := range want {
		if !n.running() {
			return fmt.Errorf("bench: %s exited on its own (%s; exit status 0 means it was asked to stop with SIGINT/SIGTERM); its log %s ends:\n%s", n, n.cmd.ProcessState, n.log, logTail(n.log, 5))
		}
	}
	return nil
}

// busy returns the CPU time the running peers used together, and false if
// it cannot be known on this system.
func (c *cluster) busy() (time.Duration, bool) {
	var sum time.Duration
	for _, n := range c.live() {
		d, ok := cpuTime(n.cmd.Process.Pid)
		if !ok {
			return 0, false
		}
		sum += d
	}
	return sum, true
}

// Idle is how much CPU the peers together may use, in core-seconds per
// second, for the ring to count as idle: ring upkeep (pings, stabilize) but
// no repair or hand-off traffic.
const idle = 0.15

// waitIdle waits until the peers' maintenance has died down — together
// they used less than idle cores over a second — so that a measurement
// does not compete with the repair that a restart sets off. It gives up
// after max and reports whether the ring became idle.
func (c *cluster) waitIdle(ctx context.Context, max time.Duration) (bool, error) {
	deadline := time.Now().Add(max)
	last, ok := c.busy()
	if !ok {
		return false, nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, context.Cause(ctx)
		case <-tick.C:
		}
		now, ok := c.busy()
		if !ok {
			return false, nil
		}
		if (now - last).Seconds() < idle {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		last = now
	}
}

// Close kills every running peer and waits for all of them.
func (c *cluster) Close() {
	for _, n := range c.nodes {
		if n.running() {
			n.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	c.wg.Wait()
}

// freeAddr returns a 127.0.0.1 address with a port free at the moment.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
