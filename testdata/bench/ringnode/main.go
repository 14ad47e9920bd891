// Command ringnode is `voicering node --sip` for the REGISTER benchmark,
// with one difference: its SIP server offers the MD5 digest challenge
// first. sipp 3.6 answers only the first challenge and knows only MD5,
// while `voicering node` offers SHA-256 first (RFC 8760) and has no flag
// to change the order. The peer is assembled exactly as the node verb
// does it (sipvm/ringpeer); only Config.Algorithms differs.
//
//	ringnode -data DIR -listen HOST:PORT [-join HOST:PORT] -sip HOST:PORT -domain D [-pprof HOST:PORT] [-no-sip-writes]
//
// -pprof serves net/http/pprof on its own mux at HOST:PORT (loopback,
// for profiling the benchmark). Block and mutex sampling stay off: at
// these rates their stack walks would show up in the CPU profile.
//
// -no-sip-writes is for measuring the SIP front alone: every record write
// SIP makes (in the benchmark, only REGISTER's binding writes) is
// acknowledged without reaching the ring, so the 200 OK follows the digest
// check at once. Reads still go to the ring. Such a peer forgets every
// binding: never run it for anything but that measurement.
//
// Built with -tags voicering_memrecords, the peers' stores keep soft-state
// record entries in memory rather than badger (store/local/memrecords.go),
// which measures what badger adds to the binding writes. The benchmark
// script builds it so when given MEMORY_RECORDS=1.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/ringpeer"
	"github.com/voicering/voicering/store"
	"github.com/voicering/voicering/store/peer"
)

func main() {
	data := flag.String("data", "", "data directory")
	listen := flag.String("listen", "127.0.0.1:7946", "ring address")
	join := flag.String("join", "", "a ring peer to join through")
	sipAddr := flag.String("sip", "127.0.0.1:5060", "SIP address (UDP and TCP)")
	domain := flag.String("domain", "voicering.local", "SIP domain")
	prof := flag.String("pprof", "", "serve net/http/pprof at this HOST:PORT (off when empty)")
	maxReg := flag.Int("max-registrations", 0, "authenticated REGISTERs worked on at once (0: sipvm's default, -1: no limit)")
	noWrites := flag.Bool("no-sip-writes", false, "acknowledge SIP's record writes without making them (the SIP front alone; see the package doc)")
	flag.Parse()
	ringpeer.TuneGC()
	if *prof != "" {
		stop, err := serveProfiles(*prof)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ringnode:", err)
			os.Exit(1)
		}
		defer stop()
	}
	if err := run(*data, *listen, *join, *sipAddr, *domain, *maxReg, *noWrites); err != nil {
		fmt.Fprintln(os.Stderr, "ringnode:", err)
		os.Exit(1)
	}
}

// serveProfiles serves the pprof handlers on a private mux at addr until
// stop is called.
func serveProfiles(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	return func() { srv.Close(); <-done }, nil
}

func run(data, listen, join, sipAddr, domain string, maxReg int, noWrites bool) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := peer.Config{Dir: data, Listen: listen, Logger: log}
	if join != "" {
		cfg.Bootstrap = []string{join}
	}
	pc := ringpeer.Config{Peer: cfg, SIP: &sipvm.Config{
		Listen: sipAddr, Domain: domain, Algorithms: []string{"MD5", "SHA-256"},
		MaxRegistrations: maxReg,
	}}
	if noWrites {
		pc.SIPRecords = func(r sipvm.Records) sipvm.Records { return unwritten{r} }
	}
	p, err := ringpeer.New(pc)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	select {
	case err = <-done:
		cancel()
		p.Close()
		return err
	case <-ctx.Done():
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	p.Leave(lctx)
	lcancel()
	cancel()
	err = <-done
	p.Close()
	return err
}

// unwritten is records whose writes succeed without being made.
type unwritten struct{ sipvm.Records }

func (unwritten) Put(context.Context, store.Key, ...store.Entry) error { return nil }
func (unwritten) Delete(context.Context, store.Key, ...string) error   { return nil }
