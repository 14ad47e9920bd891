package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/ringpeer"
	"github.com/voicering/voicering/store/peer"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a local ring of peers in this process, on 127.0.0.1, until Ctrl-C",
		Description: "Starts a ring (8 peers by default) with its data under --data, reused on the next start,\n" +
			"checks that it stores and reads back a voicemail-sized object, and prints how to use it.\n" +
			"While it runs, put/get/stat/rm/ring find it without --peer.\n\n" +
			"The first peer serves SIP with voicemail. All the peers share one voicemail key, DIR/voicemail.key\n" +
			"(made on the first start, reused after), which `voicering vm` uses when given no --vm-key.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Value: defaultDemoDir(), EnvVars: []string{"VOICERING_DEMO"}, Usage: "`DIR` for the peers' data"},
			&cli.IntFlag{Name: "peers", Value: 8, Usage: "how many peers to run"},
			&cli.StringFlag{Name: "sip", Value: "127.0.0.1:5060", Usage: "`HOST:PORT` the first peer serves SIP on (a free port when it is taken); \"off\" for none"},
			domainFlag(),
			logLevelFlag(),
		},
		Action: runDemo,
	}
}

func runDemo(c *cli.Context) error {
	n := c.Int("peers")
	if n < 1 || n > 64 {
		return usageError{fmt.Errorf("--peers %d: run 1 to 64 peers", n)}
	}
	ringpeer.TuneGC()
	log, err := logger(c)
	if err != nil {
		return err
	}
	dir := c.String("data")
	peersFile := filepath.Join(dir, demoPeersFile)
	if b, err := os.ReadFile(peersFile); err == nil {
		if addrs := strings.Fields(string(b)); len(addrs) > 0 && answers(c.Context, addrs[0]) {
			return fmt.Errorf("a demo ring already runs on %s with data in %s; stop it first (Ctrl-C in its terminal)", addrs[0], dir)
		}
	}

	// One voicemail key for every peer, kept in the demo's data directory
	// (reused on restart), where `voicering vm` finds it.
	vmKey, err := ringpeer.VoicemailKey(dir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var peers []*peer.Peer
	var whole []*ringpeer.Peer
	var addrs []string
	defer func() {
		for _, p := range whole {
			p.Close()
		}
	}()
	sipNote := ""
	for i := range n {
		cfg := ringpeer.Config{Peer: peer.Config{
			Dir: filepath.Join(dir, fmt.Sprintf("peer-%d", i)), Listen: "127.0.0.1:0",
			Bootstrap: addrs, Node: tickedNode(200 * time.Millisecond), Logger: log.With("peer", i),
		}}
		if i == 0 && c.String("sip") != "off" {
			cfg.SIP = &sipvm.Config{Listen: c.String("sip"), Domain: c.String("domain"), VM: &sipvm.VoicemailConfig{Key: vmKey}}
		}
		p, err := ringpeer.New(cfg)
		if err != nil && cfg.SIP != nil && errors.Is(err, syscall.EADDRINUSE) {
			sipNote = fmt.Sprintf("(%s is taken, so SIP listens on a free port instead)\n", c.String("sip"))
			cfg.SIP.Listen = "127.0.0.1:0"
			p, err = ringpeer.New(cfg)
		}
		if err != nil {
			return fmt.Errorf("demo: peer %d: %w", i, err)
		}
		whole = append(whole, p)
		peers = append(peers, p.Peer)
		addrs = append(addrs, p.Self().Addr)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, n)
	defer func() {
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, p := range peers {
			p.Leave(lctx)
		}
		cancel()
		stop()
		wg.Wait()
		os.Remove(peersFile)
	}()

	w := out(c)
	fmt.Fprintf(w, "voicering demo: starting %d peers on 127.0.0.1 (data in %s)\n", n, dir)
	// Peers join one after another: a ring grown from simultaneous joins
	// can settle in loops that take a merge round to undo.
	for i, p := range peers {
		wg.Go(func() {
			if err := whole[i].Run(ctx); err != nil {
				errs <- err
			}
		})
		if i == 0 {
			continue
		}
		if err := waitJoined(c.Context, p); err != nil {
			return fmt.Errorf("demo: peer %d: %w", i, err)
		}
	}
	scheme := coding.Scheme{Needed: min(4, n), Total: min(6, n)}
	took, err := demoCheck(c.Context, peers, scheme, log)
	if err != nil {
		return fmt.Errorf("demo: self-check: %w", err)
	}
	if err := os.WriteFile(peersFile, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "ring ready: stored a 480 kB recording coded %s and read it back through another peer in %s\n\n", scheme, took.Round(time.Millisecond))
	fmt.Fprintf(w, "peers:\n")
	for i, p := range peers {
		fmt.Fprintf(w, "  %d  %s  %s\n", i, p.Self().Addr, p.Self().ID.Short())
	}
	if sipSrv := whole[0].SIP; sipSrv != nil {
		if err := demoAccounts(c.Context, w, sipSrv, sipNote); err != nil {
			return fmt.Errorf("demo: accounts: %w", err)
		}
	}
	fmt.Fprintf(w, `
try, in another terminal (the demo's peers are found without --peer):
  voicering put FILE > cap.txt          store FILE; prints its cap
  voicering get "$(cat cap.txt)" -o copy  read it back
  voicering stat "$(cat cap.txt)"       where each shard lives
  voicering ring                        a peer's view of the ring
  voicering rm "$(cat cap.txt)"         remove it

Ctrl-C stops the ring; its data stays in %s for the next start.
`, dir)
	select {
	case <-c.Context.Done():
		fmt.Fprintln(w, "\nstopping the ring")
		return nil
	case err := <-errs:
		return fmt.Errorf("demo: a peer failed: %w", err)
	}
}

// demoCheck waits until the ring can place a voicemail-sized object, puts
// one through the first peer and reads it back through the last, and
// returns how long the put and get took.
func demoCheck(ctx context.Context, peers []*peer.Peer, s coding.Scheme, log *slog.Logger) (time.Duration, error) {
	data := make([]byte, 480_000)
	rand.Read(data)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := peer.Settled(peers); err != nil {
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("the ring did not settle in 60s: %w", err)
			}
			log.Debug("ring not settled yet", "err", err)
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cp, _, err := peers[0].Objects().Put(cctx, bytes.NewReader(data), coding.Params{Scheme: s, ContentType: "application/octet-stream"})
		var got bytes.Buffer
		if err == nil {
			err = peers[len(peers)-1].Objects().Get(cctx, cp, &got)
		}
		cancel()
		took := time.Since(start)
		if err == nil && !bytes.Equal(got.Bytes(), data) {
			return 0, errors.New("read back different bytes")
		}
		if err == nil {
			peers[0].Objects().Remove(ctx, cp)
			return took, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the ring did not settle in 60s: %w", err)
		}
		log.Debug("ring not settled yet", "err", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// answers reports whether a ring peer answers at addr.
func answers(ctx context.Context, addr string) bool {
	cl, err := peer.NewClient(peer.ClientConfig{Peers: []string{addr}})
	if err != nil {
		return false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _, err = cl.Lookup(ctx, dht.Key("demo"), 1)
	return err == nil
}

// waitJoined waits until p has joined the ring (it knows a successor).
func waitJoined(ctx context.Context, p *peer.Peer) error {
	deadline := time.Now().Add(30 * time.Second)
	for len(p.Node().Neighbours().Successors) == 0 {
		if time.Now().After(deadline) {
			return errors.New("did not join the ring in 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// demoUsers are the demo's SIP accounts: user name and password.
var demoUsers = [][2]string{{"alice", "alice-demo"}, {"bob", "bob-demo"}}

// demoAccounts creates the demo's SIP accounts and prints how to use them.
func demoAccounts(ctx context.Context, w io.Writer, s *sipvm.Server, note string) error {
	for _, u := range demoUsers {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.Accounts().Add(cctx, u[0], s.Domain(), u[1])
		cancel()
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nSIP: registrar and proxy for %s on %s (UDP and TCP)\n%s", s.Domain(), s.Addr(), note)
	for _, u := range demoUsers {
		fmt.Fprintf(w, "  account %-28s password %s\n", sipvm.AOR(u[0], s.Domain()), u[1])
	}
	fmt.Fprintf(w, "point a softphone at %s (user alice, domain %s), register a second as bob, call alice\n", s.Addr(), s.Domain())
	fmt.Fprintf(w, "an unanswered call goes to voicemail: alice listens at sip:voicemail@%s, and\n", s.Domain())
	fmt.Fprintf(w, "  voicering vm ls alice                 lists her messages (vm get, vm rm: see voicering vm --help)\n")
	return nil
}
