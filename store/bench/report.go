package bench

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The files Run writes into Config.Dir.
const (
	ReportFile = "report.md"
	CSVFile    = "results.csv"
	PlotFile   = "success_p99.png"
)

func writeFiles(rep *Report) error {
	f, err := os.Create(filepath.Join(rep.Dir, ReportFile))
	if err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	rep.WriteMarkdown(f)
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	if err := writeCSV(rep, filepath.Join(rep.Dir, CSVFile)); err != nil {
		return fmt.Errorf("bench: write CSV: %w", err)
	}
	if err := writePlot(rep, filepath.Join(rep.Dir, PlotFile)); err != nil {
		return fmt.Errorf("bench: write plot: %w", err)
	}
	return nil
}

// sizeName says a size the way people say it: decimal kB below 1 MiB
// (voicemails are counted in kB), binary MiB and GiB above.
func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1000:
		return strconv.FormatFloat(float64(n)/1000, 'f', -1, 64) + " kB"
	}
	return fmt.Sprintf("%d B", n)
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

func mbps(bytesPerSec float64) string { return fmt.Sprintf("%.1f", bytesPerSec/1e6) }

func pct(x float64) string { return fmt.Sprintf("%.1f %%", 100*x) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// classP99 returns the p99 of class ci in p, 0 when absent.
func classP99(p Pass, ci int) time.Duration {
	if ci < len(p.Classes) {
		return p.Classes[ci].P99
	}
	return 0
}

// Coding returns the coding scheme's result (the first), nil if none.
func (r *Report) Coding() *SchemeResult {
	if len(r.Schemes) == 0 {
		return nil
	}
	return &r.Schemes[0]
}

// WriteMarkdown writes the report as Markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	var classes []string
	objects := 0
	var bytes int64
	for _, c := range r.Workload {
		if c.Count > 0 {
			classes = append(classes, fmt.Sprintf("%d × %s", c.Count, c.Name()))
			objects += c.Count
			bytes += int64(c.Count) * c.Size
		}
	}
	p("# voicering bench\n\n")
	p("%d peers (`voicering node` processes on 127.0.0.1), workload %s (%d objects, %s), seed %d; run took %s.\n",
		r.Peers, strings.Join(classes, " + "), objects, sizeName(bytes), r.Seed, r.Took.Round(time.Second))
	p("Objects are fetched one at a time through a client outside the ring; latency is per object, from the get call to its last byte checked.\n\n")

	p("## Coding or replication?\n\n")
	p("Success is the share of objects read back intact with f peers killed (SIGKILL) just before the fetch; p99 is of the %s objects.\n\n", r.Workload[0].Name())
	p("| scheme | storage overhead | peers lost tolerated | success at f = 0, 1, … | p99 healthy (ms) | p99 at f = tolerated (ms) | ratio |\n")
	p("|---|---|---|---|---|---|---|\n")
	for _, s := range r.Schemes {
		var succ []string
		for _, rd := range s.Rounds {
			succ = append(succ, pct(rd.Success()))
		}
		var healthy, worst time.Duration
		if len(s.Rounds) > s.Tolerated {
			healthy, worst = classP99(s.Rounds[0].Pass, 0), classP99(s.Rounds[s.Tolerated].Pass, 0)
		}
		p("| %s | %.2f× | %d | %s | %s | %s | %.2f× |\n", s.Name, s.Overhead, s.Tolerated, strings.Join(succ, " / "), ms(healthy), ms(worst), ratio(worst, healthy))
	}

	p("\n## Rounds\n\n")
	p("Affected: objects with a shard (or copy) on a killed peer. At risk: objects with a segment left with fewer than needed shards on live peers — these cannot be read. Failed: why the other objects could not be read — a lookup that found no way around the killed peers (dht.ErrNoPeers), a manifest not read from a quorum of its replicas (also when a lookup returned too few of them), too few shards of a segment. Read amplification: shard bytes received per object byte delivered. Moved: shards found on another placement peer than the one their index names (the ring shifted once the killed peers were noticed); each costs no extra round trip.\n\n")
	p("| scheme | peers lost | affected | at risk | success |")
	for _, c := range r.Workload {
		if c.Count > 0 {
			p(" p50 %s (ms) | p99 %s (ms) |", c.Name(), c.Name())
		}
	}
	p(" failed: lookup / manifest / shards / other | throughput (MB/s) | read amplification | moved |\n|---|---|---|---|---|")
	for _, c := range r.Workload {
		if c.Count > 0 {
			p("---|---|")
		}
	}
	p("---|---|---|---|\n")
	for _, s := range r.Schemes {
		for _, rd := range s.Rounds {
			p("| %s | %d | %d | %d | %s (%d/%d) |", s.Name, rd.Lost, rd.Affected, rd.AtRisk, pct(rd.Success()), rd.OK, rd.Objects)
			for _, c := range rd.Classes {
				p(" %s | %s |", ms(c.P50), ms(c.P99))
			}
			fl := rd.Failures
			p(" %d / %d / %d / %d | %s | %.2f | %d |\n", fl.Lookup, fl.Manifest, fl.Shards, fl.Other, mbps(rd.Throughput()), rd.ReadAmp(), rd.Moved)
		}
	}
	p("\nStoring the workload (4 puts at a time):\n\n| scheme | took | throughput (MB/s) |\n|---|---|---|\n")
	for _, s := range r.Schemes {
		p("| %s | %s | %s |\n", s.Name, s.Put.Took.Round(time.Millisecond), mbps(s.Put.Throughput()))
	}

	var errs []string
	for _, s := range r.Schemes {
		for _, rd := range s.Rounds {
			if rd.Lost <= s.Tolerated {
				for _, e := range rd.Errors {
					errs = append(errs, fmt.Sprintf("%s, f = %d: %s", s.Name, rd.Lost, e))
				}
			}
		}
	}
	if len(errs) > 0 {
		p("\nFailures within the tolerated losses (first few per round):\n\n")
		for _, e := range errs {
			p("- %s\n", e)
		}
	}

	if s := r.Slow; s != nil {
		p("\n## One slow peer\n\n")
		p("One peer (%s) restarted with `--answer-delay %s`: it answers every store call that much later. Reads ask every placement peer and keep the first needed shards, so the slow one should not matter. The peer is switched between slow and healthy (SIGUSR1/SIGUSR2) for %d alternating passes over the workload each, so both rows see the same processes and machine load.\n\n", s.Peer, s.Delay, slowPasses)
		p("| fetch | success |")
		for _, c := range s.Healthy.Classes {
			p(" p50 %s (ms) | p99 %s (ms) |", c.Name(), c.Name())
		}
		p("\n|---|---|")
		for range s.Healthy.Classes {
			p("---|---|")
		}
		p("\n")
		for _, row := range []struct {
			name string
			p    Pass
		}{{"healthy", s.Healthy}, {"one slow peer", s.Slow}} {
			p("| %s | %s |", row.name, pct(row.p.Success()))
			for _, c := range row.p.Classes {
				p(" %s | %s |", ms(c.P50), ms(c.P99))
			}
			p("\n")
		}
		p("\np99 of the %s objects with a slow peer / healthy: **%.2f×**.\n", r.Workload[0].Name(), ratio(classP99(s.Slow, 0), classP99(s.Healthy, 0)))
	}

	if b := r.Big; b != nil {
		get := float64(b.Size) / b.Get.Seconds()
		raw := float64(b.Size) / b.TLS.Seconds()
		p("\n## One large object\n\n")
		p("| what | took | throughput (MB/s) |\n|---|---|---|\n")
		p("| put %s (%s) | %s | %s |\n", sizeName(b.Size), b.Scheme, b.Put.Round(time.Millisecond), mbps(float64(b.Size)/b.Put.Seconds()))
		p("| get %s (%s) | %s | %s |\n", sizeName(b.Size), b.Scheme, b.Get.Round(time.Millisecond), mbps(get))
		p("| raw TLS 1.3 over 127.0.0.1, same bytes, one connection | %s | %s |\n", b.TLS.Round(time.Millisecond), mbps(raw))
		p("\nGet throughput / raw loopback TLS: **%.2f×**.\n", get/raw)
	}

	if rp := r.Repair; rp != nil {
		p("\n## Repair\n\n")
		p("Peer %s killed for good with %d objects stored (%d of them had a shard on it). Every segment of every object was whole again (Stat: all shards present and matching) **%s** after the kill (%d Stat passes over the workload).\n",
			rp.Peer, rp.Objects, rp.Affected, rp.Took.Round(100*time.Millisecond), rp.Polls)
	}
	for _, n := range r.Notes {
		p("\nNote: %s.\n", n)
	}
}

func writeCSV(r *Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"experiment", "scheme", "needed", "total", "overhead", "peers_lost", "class", "objects", "affected", "at_risk", "ok", "success", "failed_lookup", "failed_manifest", "failed_shards", "failed_other", "p50_ms", "p99_ms", "seconds", "throughput_mb_s", "read_amplification", "shards_moved"})
	f64 := func(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
	msf := func(d time.Duration) string { return f64(float64(d) / float64(time.Millisecond)) }
	itoa := strconv.Itoa
	// One row for the whole pass (class "all"), then one per size class.
	rows := func(exp string, s *SchemeResult, lost, affected, atRisk int, p Pass) {
		head := []string{exp, s.Name, itoa(s.Scheme.Needed), itoa(s.Scheme.Total), f64(s.Overhead), itoa(lost)}
		w.Write(append(head, "all", itoa(p.Objects), itoa(affected), itoa(atRisk), itoa(p.OK), f64(p.Success()),
			itoa(p.Failures.Lookup), itoa(p.Failures.Manifest), itoa(p.Failures.Shards), itoa(p.Failures.Other), "", "", f64(p.Took.Seconds()), f64(p.Throughput()/1e6), f64(p.ReadAmp()), strconv.FormatUint(p.Moved, 10)))
		for _, c := range p.Classes {
			w.Write(append(head, c.Name(), itoa(c.Count), "", "", itoa(c.OK), f64(float64(c.OK)/float64(c.Count)),
				"", "", "", "", msf(c.P50), msf(c.P99), "", "", "", ""))
		}
	}
	for i := range r.Schemes {
		s := &r.Schemes[i]
		rows("put", s, 0, 0, 0, s.Put)
		for _, rd := range s.Rounds {
			rows("round", s, rd.Lost, rd.Affected, rd.AtRisk, rd.Pass)
		}
	}
	if c := r.Coding(); c != nil {
		if r.Slow != nil {
			rows("slow_peer_baseline", c, 0, 0, 0, r.Slow.Healthy)
			rows("slow_peer", c, 0, 0, 0, r.Slow.Slow)
		}
		if b := r.Big; b != nil {
			for _, x := range []struct {
				exp string
				d   time.Duration
			}{{"big_put", b.Put}, {"big_get", b.Get}, {"raw_tls", b.TLS}} {
				w.Write([]string{x.exp, c.Name, itoa(c.Scheme.Needed), itoa(c.Scheme.Total), f64(c.Overhead), "0", sizeName(b.Size), "1", "", "", "1", "1",
					"", "", "", "", "", "", f64(x.d.Seconds()), f64(float64(b.Size) / x.d.Seconds() / 1e6), "", ""})
			}
		}
		if rp := r.Repair; rp != nil {
			w.Write([]string{"repair", c.Name, itoa(c.Scheme.Needed), itoa(c.Scheme.Total), f64(c.Overhead), "1", "all", itoa(rp.Objects), itoa(rp.Affected), "", "", "",
				"", "", "", "", "", "", f64(rp.Took.Seconds()), "", "", ""})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writePlot draws success rate and p99 latency (of the first size class)
// against peers lost, one line per scheme, side by side.
func writePlot(r *Report, path string) error {
	succ := plot.New()
	succ.Title.Text = "Objects read back"
	succ.X.Label.Text = "peers lost"
	succ.Y.Label.Text = "success (%)"
	succ.Y.Min, succ.Y.Max = 0, 105
	lat := plot.New()
	lat.Title.Text = "p99 get latency, " + r.Workload[0].Name() + " objects"
	lat.X.Label.Text = "peers lost"
	lat.Y.Label.Text = "p99 (ms)"
	lat.Y.Min = 0
	for i, s := range r.Schemes {
		var sp, lp plotter.XYs
		for _, rd := range s.Rounds {
			sp = append(sp, plotter.XY{X: float64(rd.Lost), Y: 100 * rd.Success()})
			if p99 := classP99(rd.Pass, 0); p99 > 0 && rd.Success() > 0 {
				lp = append(lp, plotter.XY{X: float64(rd.Lost), Y: float64(p99) / float64(time.Millisecond)})
			}
		}
		for _, x := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{succ, sp}, {lat, lp}} {
			if len(x.xys) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(x.xys)
			if err != nil {
				return err
			}
			c := palette[i%len(palette)]
			l.Color, pts.Color = c, c
			pts.Shape = draw.CircleGlyph{}
			if i > 0 {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			x.p.Add(l, pts)
			x.p.Legend.Add(s.Name, l, pts)
		}
	}
	succ.Legend.Top, succ.Legend.Left = false, true
	lat.Legend.Top, lat.Legend.Left = true, true
	for _, p := range []*plot.Plot{succ, lat} {
		p.X.Tick.Marker = integerTicks{}
		p.Add(plotter.NewGrid())
	}
	img := vgimg.New(12*vg.Inch, 4.5*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	cs := plot.Align([][]*plot.Plot{{succ, lat}}, tiles, dc)
	succ.Draw(cs[0][0])
	lat.Draw(cs[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// integerTicks puts a labelled tick at every whole number of peers.
type integerTicks struct{}

func (integerTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for x := int(min); float64(x) <= max; x++ {
		if float64(x) >= min {
			ts = append(ts, plot.Tick{Value: float64(x), Label: strconv.Itoa(x)})
		}
	}
	return ts
}
