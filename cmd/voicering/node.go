package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/ringpeer"
	"github.com/voicering/voicering/store/peer"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "run a peer of the ring until interrupted (SIGINT/SIGTERM), then leave it gracefully",
		Description: "The peer stores shards and records for the ring and answers any peer's or client's calls.\n" +
			"Its identity (an Ed25519 key) and its store live in --data and are reused on restart.\n\n" +
			"With --sip the peer also runs the voicemail service (deposit, retrieval at sip:voicemail@DOMAIN,\n" +
			"MWI). Mailboxes are sealed with the ring's voicemail key: every SIP peer of a ring must hold the\n" +
			"same one. Create it once with `voicering vm key init --out FILE`, copy it (mode 0600) to every\n" +
			"SIP peer and start each with --vm-key FILE. Trust model: SIP peers holding the key can read every\n" +
			"mailbox and recording; storage-only peers (no --sip) never need it and see only ciphertext.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Aliases: []string{"d"}, Required: true, Usage: "data `DIR` (identity key, certificate, store)"},
			&cli.StringFlag{Name: "listen", Aliases: []string{"l"}, Value: "127.0.0.1:7946", Usage: "`HOST:PORT` to listen on for peers and clients"},
			&cli.StringFlag{Name: "advertise", Usage: "`HOST:PORT` other peers reach this one at (default: the listen address)"},
			&cli.StringSliceFlag{Name: "join", Aliases: []string{"j"}, Usage: "`HOST:PORT` of ring peers to join through (repeat or comma-separate); none starts a new ring"},
			caFlag(),
			logLevelFlag(),
			&cli.StringFlag{Name: "sip", Usage: "serve SIP (registrar and proxy) on `HOST:PORT`, UDP and TCP alike, e.g. 0.0.0.0:5060; default: no SIP"},
			&cli.StringFlag{Name: "sip-advertise", Usage: "`HOST:PORT` phones and other SIP servers reach this peer at (default: the --sip address)"},
			&cli.StringFlag{Name: "media-ip", Usage: "the `IP` voicemail receives RTP at and puts in SDP (default: the host of --sip-advertise, which must then be an IP)"},
			domainFlag(),
			&cli.StringFlag{Name: "sip-cert", Usage: "TLS certificate `FILE` (PEM) to also serve SIP over TLS on the --sip port plus one"},
			&cli.StringFlag{Name: "sip-key", Usage: "TLS key `FILE` (PEM) for --sip-cert"},
			&cli.StringFlag{Name: "vm-key", EnvVars: []string{"VOICERING_VM_KEY"}, Usage: "the ring's voicemail key `FILE` (from `voicering vm key init`), the same on every SIP peer; default: DIR/voicemail.key of --data, this peer's own (voicemail deposited through other SIP peers is then unreadable here)"},
			&cli.DurationFlag{Name: "ring-timeout", Value: 20 * time.Second, Usage: "how long a call rings before it goes to voicemail"},
			&cli.IntFlag{Name: "max-registrations", Value: sipvm.DefaultMaxRegistrations, Usage: "authenticated REGISTERs this peer works on at once; more are answered 503 with a random Retry-After, and while all are taken new REGISTERs are refused too rather than challenged (a registration storm is served at capacity, not queued until every request times out); -1: no limit"},
			&cli.DurationFlag{Name: "answer-delay", Hidden: true, Usage: "delay every store answer (benchmarks' slow peer); SIGUSR2 turns the delay off, SIGUSR1 on again"},
			&cli.DurationFlag{Name: "tick", Hidden: true, Usage: "scale the ring's periods to this stabilize period (tests and benchmarks)"},
		},
		Action: runNode,
	}
}

func runNode(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("node takes no arguments, got %q", c.Args().Slice())}
	}
	ringpeer.TuneGC()
	log, err := logger(c)
	if err != nil {
		return err
	}
	cfg := peer.Config{
		Dir: c.String("data"), Listen: c.String("listen"), Advertise: c.String("advertise"),
		Bootstrap: splitAddrs(c.StringSlice("join")), Logger: log, AnswerDelay: c.Duration("answer-delay"),
	}
	if f := c.String("ca"); f != "" {
		if cfg.CA, err = dht.ReadCACert(f); err != nil {
			return err
		}
	}
	if t := c.Duration("tick"); t > 0 {
		cfg.Node = tickedNode(t)
		cfg.Maintain.Settle = 4 * t
	}
	rc := ringpeer.Config{Peer: cfg}
	if rc.SIP, err = sipConfig(c); err != nil {
		return err
	}
	if rc.SIP != nil {
		if f := c.String("vm-key"); f != "" {
			if rc.SIP.VM.Key, err = ringpeer.ReadKey(f); err != nil {
				return usageError{fmt.Errorf("--vm-key %s: %w", f, err)}
			}
		} else {
			log.Warn("voicemail: no --vm-key, so this peer seals mailboxes with its own key (" + filepath.Join(cfg.Dir, ringpeer.KeyFile) +
				"): voicemail left through other SIP peers will be unreadable here, and the reverse, unless every SIP peer shares one key" +
				" (create it with `voicering vm key init --out FILE`, start every SIP peer with --vm-key FILE)")
		}
	}
	p, err := ringpeer.New(rc)
	if err != nil {
		return err
	}
	log.Info("peer running", "id", p.Self().ID.String(), "addr", p.Self().Addr, "data", cfg.Dir, "protocol", dht.ProtocolVersion)
	if p.SIP != nil {
		log.Info("SIP serving", "addr", p.SIP.Addr(), "advertise", p.SIP.Advertised(), "domain", p.SIP.Domain())
	}
	if d := c.Duration("answer-delay"); d > 0 {
		stop := toggleAnswerDelay(c.Context, p, d, log)
		defer stop()
	}
	return serveUntilDone(c.Context, p, log)
}

// sipConfig returns the SIP settings the flags give, nil without --sip.
func sipConfig(c *cli.Context) (*sipvm.Config, error) {
	if c.String("sip") == "" {
		return nil, nil
	}
	sc := &sipvm.Config{
		Listen: c.String("sip"), Advertise: c.String("sip-advertise"),
		Domain: c.String("domain"), RingTimeout: c.Duration("ring-timeout"),
		MaxRegistrations: c.Int("max-registrations"),
		VM:               &sipvm.VoicemailConfig{}, // Objects and, without --vm-key, Key: ringpeer fills them
	}
	if m := c.String("media-ip"); m != "" {
		if sc.VM.MediaIP = net.ParseIP(m); sc.VM.MediaIP == nil {
			return nil, usageError{fmt.Errorf("--media-ip %q is not an IP address", m)}
		}
	}
	if cert, key := c.String("sip-cert"), c.String("sip-key"); cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, usageError{fmt.Errorf("--sip-cert %q --sip-key %q: %w", cert, key, err)}
		}
		sc.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return sc, nil
}

// domainFlag is the SIP domain, for node and user.
func domainFlag() cli.Flag {
	return &cli.StringFlag{Name: "domain", Value: "voicering.local", EnvVars: []string{"VOICERING_DOMAIN"}, Usage: "the SIP `DOMAIN` served (users are sip:USER@DOMAIN; it is also the digest realm)"}
}

// serveUntilDone runs p until ctx ends, then leaves the ring and closes p.
func serveUntilDone(ctx context.Context, p *ringpeer.Peer, log interface{ Info(string, ...any) }) error {
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	select {
	case err := <-done: // a part failed
		stop()
		p.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("leaving the ring")
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	p.Leave(lctx)
	cancel()
	stop()
	err := <-done
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	return err
}

// tickedNode returns ring settings whose periods follow one tick (the
// stabilize period), for rings that must settle fast: tests, benchmarks,
// the demo.
func tickedNode(t time.Duration) dht.Config {
	return dht.Config{
		StabilizePeriod:  t,
		FixFingersPeriod: t,
		PingPeriod:       2 * t,
		MergePeriod:      20 * t,
		Backoff:          dht.Backoff{Initial: t / 2, Max: 25 * t},
	}
}
