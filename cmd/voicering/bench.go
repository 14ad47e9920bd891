package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "benchmark reads under peer loss on a ring of local peers: coding against replication, a slow peer, repair",
		Description: "Starts a ring of --peers `voicering node` processes on 127.0.0.1, stores a workload with the\n" +
			"--needed/--total coding scheme and with replication at the same storage overhead and at 3 copies,\n" +
			"and for f = 0, 1, … kills f peers and reads everything back: success rate, p50/p99 latency,\n" +
			"throughput and read amplification. Then one slow peer, one large object against raw loopback TLS,\n" +
			"and the time repair takes after a peer is lost for good. Writes report.md, results.csv and\n" +
			"success_p99.png to --out, and prints the report. The default run takes several minutes; --quick\n" +
			"gives a fast look. Every peer it starts is killed when it ends or is interrupted.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output `DIR` (default: bench-out/<timestamp>)"},
			&cli.BoolFlag{Name: "quick", Usage: "a fast look: 7 peers, 20 × 480 kB + 1 × 8 MiB, a 32 MiB large object (other flags still apply)"},
			&cli.IntFlag{Name: "peers", Usage: "ring size (default: 12, 7 with --quick)"},
			&cli.IntFlag{Name: "needed", Aliases: []string{"k"}, Value: coding.DefaultScheme.Needed, Usage: "coding: shards needed to rebuild a segment"},
			&cli.IntFlag{Name: "total", Aliases: []string{"n"}, Value: coding.DefaultScheme.Total, Usage: "coding: shards per segment"},
			&cli.StringFlag{Name: "replicas", Usage: "replication factors to compare, comma-separated, or \"none\" (default: ceil(total/needed) and 3)"},
			&cli.StringSliceFlag{Name: "objects", Usage: "workload class `COUNTxSIZE`, e.g. 200x480kB or 4x64MiB (repeat for more; default: 200x480kB and 4x64MiB)"},
			&cli.StringFlag{Name: "big", Usage: "`SIZE` of the object whose get throughput is compared with raw loopback TLS, or 0 to skip (default: 256MiB)"},
			&cli.DurationFlag{Name: "slow-delay", Usage: "answer delay of the slow peer, or 0 to skip (default: 200ms)"},
			&cli.BoolFlag{Name: "no-repair", Usage: "skip the repair-time measurement"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the workload bytes and of the peers killed"},
			&cli.BoolFlag{Name: "keep-data", Usage: "keep the peers' data directories under --out/data"},
			&cli.StringFlag{Name: "binary", Usage: "voicering `FILE` to run the peers with (default: this executable)"},
			logLevelFlag(),
		},
		Action: runBench,
	}
}

func runBench(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("bench takes no arguments, got %q", c.Args().Slice())}
	}
	log, err := logger(c)
	if err != nil {
		return err
	}
	var cfg bench.Config
	if c.Bool("quick") {
		cfg = bench.Quick()
	}
	cfg.Dir, cfg.Binary, cfg.KeepData, cfg.Seed, cfg.Logger = c.String("out"), c.String("binary"), c.Bool("keep-data"), c.Uint64("seed"), log
	if c.IsSet("peers") {
		cfg.Peers = c.Int("peers")
	}
	cfg.Scheme = coding.Scheme{Needed: c.Int("needed"), Total: c.Int("total")}
	if err := cfg.Scheme.Validate(); err != nil {
		return usageError{fmt.Errorf("--needed/--total: %w", err)}
	}
	if s := c.String("replicas"); s != "" {
		cfg.Replicas = []int{}
		if s != "none" {
			for _, f := range strings.Split(s, ",") {
				r, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || r < 1 {
					return usageError{fmt.Errorf("--replicas %q: want whole numbers ≥ 1, comma-separated, or none", s)}
				}
				cfg.Replicas = append(cfg.Replicas, r)
			}
		}
	}
	if cls := c.StringSlice("objects"); len(cls) > 0 {
		cfg.Workload = nil
		for _, s := range cls {
			cl, err := parseClass(s)
			if err != nil {
				return usageError{err}
			}
			cfg.Workload = append(cfg.Workload, cl)
		}
	}
	if s := c.String("big"); s != "" {
		n, err := parseSize(s)
		if err != nil {
			return usageError{fmt.Errorf("--big: %w", err)}
		}
		cfg.BigSize = n
		if n == 0 {
			cfg.BigSize = -1
		}
	}
	if c.IsSet("slow-delay") {
		cfg.SlowDelay = c.Duration("slow-delay")
		if cfg.SlowDelay == 0 {
			cfg.SlowDelay = -1
		}
	}
	if c.Bool("no-repair") {
		cfg.RepairTimeout = -1
	}
	rep, err := bench.Run(c.Context, cfg)
	if err != nil {
		return err
	}
	rep.WriteMarkdown(out(c))
	fmt.Fprintf(out(c), "\nWritten to %s (%s, %s, %s).\n", rep.Dir, bench.ReportFile, bench.CSVFile, bench.PlotFile)
	return nil
}

// parseClass reads a workload class, "COUNTxSIZE".
func parseClass(s string) (bench.Class, error) {
	count, size, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 0 {
		return bench.Class{}, fmt.Errorf("--objects %q: want COUNTxSIZE, e.g. 200x480kB", s)
	}
	b, err := parseSize(size)
	if err != nil || b < 1 {
		return bench.Class{}, fmt.Errorf("--objects %q: want COUNTxSIZE with a size of at least 1 byte, e.g. 200x480kB", s)
	}
	return bench.Class{Count: n, Size: b}, nil
}

// parseSize reads a byte count with an optional unit: B, kB, MB, GB
// (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	}
	mult := map[string]float64{"": 1, "b": 1, "kb": 1e3, "k": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if mult == 0 || err != nil || f < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (B, kB, MB, GB, KiB, MiB, GiB)", s)
	}
	return int64(f * mult), nil
}
