package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voicering/voicering/coding"
)

// buildVoicering builds the voicering binary the peers run.
func buildVoicering(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "voicering")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/voicering/voicering/cmd/voicering")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build voicering: %v\n%s", err, out)
	}
	return bin
}

// TestRunEndToEnd runs a small benchmark on real peer processes and checks
// what a user reads in the report: every round of every scheme, nothing
// lost within the tolerated losses, the files, and no peer left running.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts peer processes")
	}
	bin := buildVoicering(t)
	dir := t.TempDir()
	cfg := Config{
		Binary:   bin,
		Dir:      dir,
		Peers:    7,
		Workload: []Class{{Count: 6, Size: 100_000}, {Count: 1, Size: 2 << 20}},
		BigSize:  4 << 20,
		Seed:     7,
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	want := []struct {
		name      string
		tolerated int
	}{{"coding 4-of-6", 2}, {"replication ×2", 1}, {"replication ×3", 2}}
	var lost []string // reads that failed within the tolerated losses
	if len(rep.Schemes) != len(want) {
		t.Fatalf("got %d schemes, want %d", len(rep.Schemes), len(want))
	}
	for i, w := range want {
		s := rep.Schemes[i]
		if s.Name != w.name || s.Tolerated != w.tolerated {
			t.Errorf("scheme %d is %q tolerating %d, want %q tolerating %d", i, s.Name, s.Tolerated, w.name, w.tolerated)
		}
		if got := len(s.Rounds); got != w.tolerated+2 {
			t.Errorf("%s: %d rounds, want f = 0…%d", s.Name, got, w.tolerated+1)
		}
		for f, rd := range s.Rounds {
			if rd.Lost != f || len(rd.Killed) != f || rd.Objects != 7 {
				t.Errorf("%s round %d: lost %d, killed %v, %d objects; want %d lost of 7 objects", s.Name, f, rd.Lost, rd.Killed, rd.Objects, f)
			}
			if f <= s.Tolerated && rd.OK != rd.Objects {
				lost = append(lost, fmt.Sprintf("%s with %d peers lost: %d of %d objects read back (tolerated: %d); failures: %q",
					s.Name, f, rd.OK, rd.Objects, s.Tolerated, rd.Errors))
			}
			if rd.OK > rd.Objects-rd.AtRisk {
				t.Errorf("%s with %d peers lost: %d objects read back, but %d had too few shards left", s.Name, f, rd.OK, rd.AtRisk)
			}
		}
	}
	if rep.Slow == nil || rep.Slow.Slow.OK != rep.Slow.Slow.Objects {
		t.Errorf("slow peer: %+v, want every object read back", rep.Slow)
	} else if rep.Slow.Slow.Objects != 7*slowPasses || rep.Slow.Healthy.Objects != 7*slowPasses {
		t.Errorf("slow peer: %d fetches slow and %d healthy, want each of the 7 objects %d times in both", rep.Slow.Slow.Objects, rep.Slow.Healthy.Objects, slowPasses)
	}
	if rep.Big == nil || rep.Big.Get <= 0 || rep.Big.TLS <= 0 {
		t.Errorf("large object: %+v, want a get and a TLS copy measured", rep.Big)
	}
	if rep.Repair == nil || rep.Repair.Took <= 0 {
		t.Errorf("repair: %+v, want a repair time", rep.Repair)
	}

	md, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Coding or replication?", "| coding 4-of-6 | 1.50× | 2 |", "## One slow peer", "## One large object", "## Repair"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("%s does not contain %q:\n%s", ReportFile, s, md)
		}
	}
	f, err := os.Open(filepath.Join(dir, CSVFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", CSVFile, err)
	}
	rounds := 0
	for _, r := range rows {
		if r[0] == "round" && r[6] == "all" {
			rounds++
		}
	}
	if rounds != 4+3+4 {
		t.Errorf("%s has %d round rows, want 11", CSVFile, rounds)
	}
	png, err := os.ReadFile(filepath.Join(dir, PlotFile))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("%s is not a PNG (err %v)", PlotFile, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("peers' data directory left behind (stat: %v)", err)
	}
	assertNoPeers(t, bin)

	// Reading everything back within the tolerated losses is the store's
	// promise.
	if len(lost) > 0 {
		t.Error("reads failed within the tolerated losses:\n" + strings.Join(lost, "\n"))
	}
}

// TestRunCancelled checks that cancelling a run kills every peer it
// started.
func TestRunCancelled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts peer processes")
	}
	bin := buildVoicering(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := Config{Binary: bin, Dir: t.TempDir(), Peers: 7, Workload: []Class{{Count: 2, Size: 1000}}}
	go func() {
		_, err := Run(ctx, cfg)
		done <- err
	}()
	// Cancel once the peers are up: their logs exist.
	waitFor(t, func() bool {
		es, _ := os.ReadDir(filepath.Join(cfg.Dir, "logs"))
		return len(es) == 7
	})
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Run returned no error after its context was cancelled")
	}
	assertNoPeers(t, bin)
}

func TestRunBadBinary(t *testing.T) {
	_, err := Run(context.Background(), Config{Binary: filepath.Join(t.TempDir(), "missing"), Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "voicering binary") {
		t.Fatalf("got %v, want an error naming the voicering binary", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"too few peers", Config{Peers: 6}, "use at least 7 peers"},
		{"too few peers for replication", Config{Peers: 7, Replicas: []int{8}}, "use at least 9 peers"},
		{"bad scheme", Config{Scheme: coding.Scheme{Needed: 5, Total: 4}}, "total 4 is less than needed 5"},
		{"empty workload", Config{Workload: []Class{{Count: 0, Size: 10}}}, "no objects"},
		{"zero size", Config{Workload: []Class{{Count: 1, Size: 0}}}, "size ≥ 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Binary = "/bin/true"
			err := tt.cfg.fill()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	var cfg Config
	if err := cfg.fill(); err != nil {
		t.Fatal(err)
	}
	if cfg.Peers != 12 || cfg.Scheme != coding.DefaultScheme || len(cfg.Replicas) != 2 || cfg.Replicas[0] != 2 || cfg.Replicas[1] != 3 {
		t.Errorf("defaults: %d peers, %v, replicas %v; want 12, 4-of-6, [2 3]", cfg.Peers, cfg.Scheme, cfg.Replicas)
	}
	if len(cfg.Workload) != 2 || cfg.Workload[0] != (Class{200, 480_000}) || cfg.Workload[1] != (Class{4, 64 << 20}) {
		t.Errorf("default workload %v, want 200 × 480 kB and 4 × 64 MiB", cfg.Workload)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	tests := []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"none", nil, 0.99, 0},
		{"one", ms(5), 0.99, 5 * time.Millisecond},
		{"median of odd", ms(3, 1, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p99 of 4 is the max", ms(1, 2, 3, 40), 0.99, 40 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.ds, tt.q); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.ds, tt.q, got, tt.want)
			}
		})
	}
}

func TestExposure(t *testing.T) {
	// Two objects of one segment each, 2-of-3: a on peers A B C, b on C D E.
	h := holding{
		{{0: {"A"}, 1: {"B"}, 2: {"C"}}},
		{{0: {"C"}, 1: {"D"}, 2: {"E", "F"}}},
	}
	s := coding.Scheme{Needed: 2, Total: 3}
	tests := []struct {
		name             string
		dead             []string
		affected, atRisk int
	}{
		{"none", nil, 0, 0},
		{"one shared", []string{"C"}, 2, 0},
		{"two of a", []string{"A", "B"}, 1, 1},
		{"a copy survives", []string{"C", "E"}, 2, 0},
		{"all of b", []string{"C", "D", "E", "F"}, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dead := map[string]bool{}
			for _, d := range tt.dead {
				dead[d] = true
			}
			a, r := exposure(h, dead, s)
			if a != tt.affected || r != tt.atRisk {
				t.Errorf("exposure = %d affected, %d at risk; want %d, %d", a, r, tt.affected, tt.atRisk)
			}
		})
	}
}

func TestSizeName(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{{480_000, "480 kB"}, {64 << 20, "64 MiB"}, {256 << 20, "256 MiB"}, {1 << 30, "1 GiB"}, {100, "100 B"}, {1_500_000, "1.4 MiB"}}
	for _, tt := range tests {
		if got := sizeName(tt.n); got != tt.want {
			t.Errorf("sizeName(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// assertNoPeers fails if any process of bin is still running.
func assertNoPeers(t *testing.T, bin string) {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", bin+" node").Output()
	for _, pid := range strings.Fields(string(out)) {
		t.Errorf("peer process %s of %s still running", pid, bin)
		if p, err := strconv.Atoi(pid); err == nil {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
