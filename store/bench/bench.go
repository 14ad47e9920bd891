package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store/peer"
)

// Class is a number of objects of one size.
type Class struct {
	Count int
	Size  int64 // bytes
}

// Name says the class's size, e.g. "480 kB" or "64 MiB".
func (c Class) Name() string { return sizeName(c.Size) }

// Config configures a benchmark run. The zero value runs the default
// benchmark: 12 peers, 4-of-6 coding against 2- and 3-way replication,
// 200 objects of 480 kB and 4 of 64 MiB.
type Config struct {
	// Binary is the voicering executable started (with `node`) for each
	// peer. Empty: the running executable (os.Executable).
	Binary string
	// Dir is where the report, the CSV, the plot and the peers' logs are
	// written; the peers' data directories live under Dir/data and are
	// removed at the end unless KeepData. Empty: bench-out/<timestamp>.
	Dir string
	// KeepData keeps the peers' data directories. False: removed when Run
	// returns.
	KeepData bool
	// Peers is the size of the ring. Zero: 12. It must exceed the largest
	// number of peers a round kills.
	Peers int
	// Scheme is the coding scheme measured. Zero: coding.DefaultScheme
	// (4-of-6).
	Scheme coding.Scheme
	// Replicas lists the replication factors compared with Scheme. Nil:
	// ⌈total/needed⌉ (the same storage overhead) and 3, without
	// duplicates. Empty but non-nil: none.
	Replicas []int
	// Workload is what is stored for each scheme. Nil: 200 × 480 kB and
	// 4 × 64 MiB.
	Workload []Class
	// BigSize is the size of the object whose get throughput is compared
	// with raw loopback TLS. Zero: 256 MiB; negative: not measured.
	BigSize int64
	// SlowDelay is the answer delay of the slow peer of the long-tail
	// measurement. Zero: 200ms; negative: not measured.
	SlowDelay time.Duration
	// RepairTimeout bounds the wait for repair after a peer is killed for
	// good. Zero: 5m; negative: repair not measured.
	RepairTimeout time.Duration
	// SettleTimeout bounds each wait for the ring to be whole (all peers
	// found by lookups, every object's shards all in place). Zero: 3m.
	SettleTimeout time.Duration
	// IdleTimeout bounds the wait, before each measurement, for the peers
	// to go idle (on Linux: together under 0.15 cores of CPU over a second),
	// so that a fetch does not compete with the repair a restart set off.
	// A measurement taken on a ring that never went idle is noted in the
	// report. Zero: 1m.
	IdleTimeout time.Duration
	// GetTimeout bounds each get. Zero: 2m.
	GetTimeout time.Duration
	// Seed makes the workload bytes and the choice of peers killed
	// repeatable. Zero: 1.
	Seed uint64
	// Logger receives progress, one line per step. Nil: discarded.
	Logger *slog.Logger
}

// Quick returns the configuration of a fast look: 7 peers (one more than
// the 6 shards of 4-of-6, so repair has somewhere to go), 20 objects of
// 480 kB and one of 8 MiB, a 32 MiB throughput object.
func Quick() Config {
	return Config{
		Peers:    7,
		Workload: []Class{{Count: 20, Size: 480_000}, {Count: 1, Size: 8 << 20}},
		BigSize:  32 << 20,
	}
}

func (c *Config) fill() error {
	if c.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: cannot find the voicering binary to start peers with: %w", err)
		}
		c.Binary = exe
	}
	if c.Dir == "" {
		c.Dir = filepath.Join("bench-out", time.Now().Format("20060102-150405"))
	}
	if c.Peers == 0 {
		c.Peers = 12
	}
	if c.Scheme == (coding.Scheme{}) {
		c.Scheme = coding.DefaultScheme
	}
	if err := c.Scheme.Validate(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if c.Replicas == nil {
		same := (c.Scheme.Total + c.Scheme.Needed - 1) / c.Scheme.Needed
		c.Replicas = []int{same}
		if same != 3 {
			c.Replicas = append(c.Replicas, 3)
		}
	}
	if c.Workload == nil {
		c.Workload = []Class{{Count: 200, Size: 480_000}, {Count: 4, Size: 64 << 20}}
	}
	if c.BigSize == 0 {
		c.BigSize = 256 << 20
	}
	if c.SlowDelay == 0 {
		c.SlowDelay = 200 * time.Millisecond
	}
	if c.RepairTimeout == 0 {
		c.RepairTimeout = 5 * time.Minute
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 3 * time.Minute
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = time.Minute
	}
	if c.GetTimeout == 0 {
		c.GetTimeout = 2 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	objects := 0
	for _, cl := range c.Workload {
		if cl.Count < 0 || cl.Size < 1 {
			return fmt.Errorf("bench: workload class %d × %d bytes: want a count ≥ 0 and a size ≥ 1", cl.Count, cl.Size)
		}
		objects += cl.Count
	}
	if objects == 0 {
		return errors.New("bench: the workload has no objects; give at least one class a count")
	}
	most := c.Scheme.Total
	for _, r := range c.Replicas {
		if r < 1 || r > coding.MaxShards {
			return fmt.Errorf("bench: replication factor %d: want 1..%d", r, coding.MaxShards)
		}
		most = max(most, r)
	}
	// Rounds kill up to tolerated+1 peers, and a put needs Total live ones.
	if c.Peers < most+1 {
		return fmt.Errorf("bench: %d peers are too few: the widest scheme places %d shards and rounds kill up to %d peers; use at least %d peers", c.Peers, most, most-c.Scheme.Needed+1, most+1)
	}
	if c.SettleTimeout < 0 || c.GetTimeout < 0 {
		return errors.New("bench: negative SettleTimeout or GetTimeout")
	}
	return nil
}

// Report is what a run measured.
type Report struct {
	Dir      string        // where the files were written
	Peers    int           // ring size
	Workload []Class       // stored for each scheme
	Seed     uint64        // of the workload and the kills
	Started  time.Time     // when the run began
	Took     time.Duration // the whole run
	Schemes  []SchemeResult
	Slow     *SlowResult   // nil: not measured
	Big      *BigResult    // nil: not measured
	Repair   *RepairResult // nil: not measured
	Notes    []string      // what was skipped, and why
}

// SchemeResult is one scheme's rounds.
type SchemeResult struct {
	Name      string        // "coding 4-of-6", "replication ×2"
	Scheme    coding.Scheme // replication R is {Needed: 1, Total: R}
	Overhead  float64       // stored bytes per object byte: Total/Needed
	Tolerated int           // peers that may be lost: Total − Needed
	Put       Pass          // storing the workload
	Rounds    []Round       // f = 0 … Tolerated+1
}

// Round is one fetch of the workload with Lost peers killed.
type Round struct {
	Lost     int      // peers killed before the fetch
	Killed   []string // their addresses
	Affected int      // objects with a shard on a killed peer
	AtRisk   int      // objects with a segment left with fewer than needed shards
	Pass
}

// Pass is one pass over the workload: a put or a fetch of every object.
type Pass struct {
	Objects    int           // attempted
	OK         int           // succeeded (a fetch: with the right bytes)
	Errors     []string      // the first few failures
	Failures   Failures      // why the others failed
	Classes    []ClassResult // per size class
	Took       time.Duration // wall time of the pass
	Bytes      int64         // object bytes moved by the successful ones
	ShardBytes uint64        // shard bytes received from peers (fetches)
	// Moved is how many shards a fetch found on a placement peer other
	// than the one their index names: the ring shifted since the put.
	Moved uint64
}

// Failures counts failed operations by cause.
type Failures struct {
	Lookup   int // a ring lookup found no way through (dht.ErrNoPeers)
	Manifest int // the manifest could not be read (no quorum of its replicas, or none found)
	Shards   int // fewer than needed shards of a segment arrived (coding.ErrTooFewShards)
	Other    int // anything else, e.g. wrong bytes, a timeout
}

// ClassResult is one size class within a pass.
type ClassResult struct {
	Class
	OK  int
	P50 time.Duration // of the successful operations
	P99 time.Duration
}

// Success is OK/Objects.
func (p Pass) Success() float64 {
	if p.Objects == 0 {
		return 0
	}
	return float64(p.OK) / float64(p.Objects)
}

// Throughput is object bytes per second.
func (p Pass) Throughput() float64 {
	if p.Took <= 0 {
		return 0
	}
	return float64(p.Bytes) / p.Took.Seconds()
}

// ReadAmp is shard bytes received per object byte delivered.
func (p Pass) ReadAmp() float64 {
	if p.Bytes == 0 {
		return 0
	}
	return float64(p.ShardBytes) / float64(p.Bytes)
}

// SlowResult compares a fetch with one slow peer against a healthy one.
type SlowResult struct {
	Delay   time.Duration
	Peer    string // the slow peer's address
	Healthy Pass
	Slow    Pass
}

// BigResult compares getting one large object with raw loopback TLS.
type BigResult struct {
	Size   int64
	Scheme coding.Scheme
	Put    time.Duration
	Get    time.Duration
	TLS    time.Duration // copying Size bytes over one TLS 1.3 connection on 127.0.0.1
}

// RepairResult is how long the ring took to rebuild what one lost peer
// held.
type RepairResult struct {
	Peer     string        // the peer killed for good
	Objects  int           // objects stored
	Affected int           // of them, with a shard on that peer
	Took     time.Duration // from the kill until every segment was whole
	Polls    int           // Stat passes over the workload until then
}

// Run runs the benchmark cfg describes and writes its files. It returns
// the report, or an error naming the step that failed; in both cases every
// peer process it started has been killed and waited for.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: output directory: %w", err)
	}
	if fi, err := os.Stat(cfg.Binary); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("bench: voicering binary %q: not a file; build it (go build ./cmd/voicering) and pass its path", cfg.Binary)
	}
	rep := &Report{Dir: cfg.Dir, Peers: cfg.Peers, Workload: cfg.Workload, Seed: cfg.Seed, Started: time.Now()}
	cl := newCluster(cfg.Binary, cfg.Dir, cfg.Logger)
	defer func() {
		cl.Close()
		if !cfg.KeepData {
			os.RemoveAll(filepath.Join(cfg.Dir, "data"))
		}
	}()
	b := &run{cfg: cfg, cl: cl, log: cfg.Logger, rep: rep, rng: rand.New(rand.NewPCG(cfg.Seed, 0x62656e6368))}
	if err := b.all(ctx); err != nil {
		return nil, err
	}
	rep.Took = time.Since(rep.Started)
	if err := writeFiles(rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// run is the state of one Run.
type run struct {
	cfg    Config
	cl     *cluster
	client *peer.Client
	log    *slog.Logger
	rep    *Report
	rng    *rand.Rand
}

func (b *run) all(ctx context.Context) error {
	b.log.Info("starting the ring", "peers", b.cfg.Peers, "dir", b.cfg.Dir)
	if err := b.cl.start(ctx, b.cfg.Peers); err != nil {
		return err
	}
	client, err := peer.NewClient(peer.ClientConfig{Peers: b.cl.addrs()})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer client.Close()
	b.client = client
	if err := b.waitUsable(ctx); err != nil {
		return err
	}

	coded := SchemeResult{Name: "coding " + b.cfg.Scheme.String(), Scheme: b.cfg.Scheme}
	schemes := []SchemeResult{coded}
	for _, r := range b.cfg.Replicas {
		s := coding.Scheme{Needed: 1, Total: r}
		if s == b.cfg.Scheme {
			continue
		}
		schemes = append(schemes, SchemeResult{Name: fmt.Sprintf("replication ×%d", r), Scheme: s})
	}
	for i := range schemes {
		schemes[i].Overhead = float64(schemes[i].Scheme.Total) / float64(schemes[i].Scheme.Needed)
		schemes[i].Tolerated = schemes[i].Scheme.Parity()
	}
	// Replication first, so that the coding workload stays stored for
	// the slow-peer, large-object and repair measurements at the end.
	order := append(slices.Clone(schemes[1:]), schemes[0])
	for i := range order {
		s := &order[i]
		last := i == len(order)-1
		objs, err := b.putWorkload(ctx, s)
		if err != nil {
			return err
		}
		if err := b.rounds(ctx, s, objs); err != nil {
			return err
		}
		if !last {
			if err := b.remove(ctx, objs); err != nil {
				return err
			}
			continue
		}
		if err := b.extras(ctx, s.Scheme, objs); err != nil {
			return err
		}
	}
	b.rep.Schemes = append([]SchemeResult{order[len(order)-1]}, order[:len(order)-1]...)
	return nil
}

// extras runs the measurements made on the coding scheme only.
func (b *run) extras(ctx context.Context, scheme coding.Scheme, objs []*object) error {
	if b.cfg.SlowDelay > 0 {
		if err := b.slowPeer(ctx, objs); err != nil {
			return err
		}
	} else {
		b.rep.Notes = append(b.rep.Notes, "slow peer not measured (SlowDelay < 0)")
	}
	if b.cfg.BigSize > 0 {
		if err := b.big(ctx, scheme); err != nil {
			return err
		}
	} else {
		b.rep.Notes = append(b.rep.Notes, "large-object throughput not measured (BigSize < 0)")
	}
	switch {
	case b.cfg.RepairTimeout < 0:
		b.rep.Notes = append(b.rep.Notes, "repair not measured (RepairTimeout < 0)")
	case b.cfg.Peers-1 < scheme.Total:
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("repair not measured: after losing a peer, %d peers cannot hold %d shards each segment", b.cfg.Peers-1, scheme.Total))
	default:
		if err := b.repair(ctx, objs); err != nil {
			return err
		}
	}
	return nil
}
