package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store/peer"
	"github.com/voicering/voicering/store/ring"
)

// Flags several verbs share.

func peerFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name: "peer", Aliases: []string{"p"}, EnvVars: []string{"VOICERING_PEER"},
		Usage: "address of a ring peer (repeat or comma-separate for more); default: the running `voicering demo`",
	}
}

func caFlag() cli.Flag {
	return &cli.StringFlag{Name: "ca", Usage: "the ring CA's certificate `FILE` (closed rings only)", EnvVars: []string{"VOICERING_CA"}}
}

func identityFlag() cli.Flag {
	return &cli.StringFlag{Name: "identity", Usage: "`DIR` holding this client's key and CA-issued certificate (closed rings); default: a fresh key", EnvVars: []string{"VOICERING_IDENTITY"}}
}

func logLevelFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-level", Value: "info", Usage: "least important log lines to print: debug, info, warn or error"}
}

// logger returns a structured logger on stderr at the level the flag says.
func logger(c *cli.Context) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))}
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lvl})), nil
}

// defaultDemoDir is where `voicering demo` keeps its peers' data, and the
// file listing their addresses that clients read when given no --peer.
func defaultDemoDir() string {
	if d := os.Getenv("VOICERING_DEMO"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "voicering", "demo")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "voicering", "demo")
	}
	return filepath.Join(os.TempDir(), "voicering-demo")
}

// demoPeersFile lists the running demo ring's addresses, one a line.
const demoPeersFile = "peers.txt"

// peerAddrs returns the ring peers a client verb should use: --peer, else
// the running demo's.
func peerAddrs(c *cli.Context) ([]string, error) {
	if addrs := splitAddrs(c.StringSlice("peer")); len(addrs) > 0 {
		return addrs, nil
	}
	b, err := os.ReadFile(filepath.Join(defaultDemoDir(), demoPeersFile))
	if err != nil {
		return nil, usageError{errors.New("no --peer given and no demo ring is running: start one with `voicering demo`, or name a peer with --peer HOST:PORT")}
	}
	return strings.Fields(string(b)), nil
}

// splitAddrs flattens repeated and comma-separated address flags.
func splitAddrs(in []string) []string {
	var addrs []string
	for _, a := range in {
		for _, s := range strings.Split(a, ",") {
			if s = strings.TrimSpace(s); s != "" {
				addrs = append(addrs, s)
			}
		}
	}
	return addrs
}

// newClient returns a ring client as the flags say.
func newClient(c *cli.Context, log *slog.Logger) (*peer.Client, error) {
	addrs, err := peerAddrs(c)
	if err != nil {
		return nil, err
	}
	cfg := peer.ClientConfig{Peers: addrs, Logger: log}
	if f := c.String("ca"); f != "" {
		if cfg.CA, err = dht.ReadCACert(f); err != nil {
			return nil, err
		}
	}
	if d := c.String("identity"); d != "" {
		if cfg.Identity, err = dht.LoadIdentity(d); err != nil {
			return nil, err
		}
	}
	return peer.NewClient(cfg)
}

// session is what a client verb works with: a ring client and a context
// bounded by --timeout. Close releases both.
type session struct {
	*peer.Client
	ctx    context.Context
	cancel context.CancelFunc
}

// openSession builds the client and context a client verb's flags ask for.
func openSession(c *cli.Context) (*session, error) {
	log, err := logger(c)
	if err != nil {
		return nil, err
	}
	cl, err := newClient(c, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	return &session{cl, ctx, cancel}, nil
}

func (s *session) Close() {
	s.cancel()
	s.Client.Close()
}

// capArg returns the one CAP argument a verb takes.
func capArg(c *cli.Context) (coding.Cap, error) {
	if c.NArg() != 1 {
		return coding.Cap{}, usageError{fmt.Errorf("%s takes one CAP, got %d arguments", c.Command.Name, c.NArg())}
	}
	cp, err := coding.ParseCap(c.Args().First())
	if err != nil {
		return coding.Cap{}, usageError{err}
	}
	return cp, nil
}

// capSession is openSession for a verb that takes one CAP argument.
func capSession(c *cli.Context) (coding.Cap, *session, error) {
	cp, err := capArg(c)
	if err != nil {
		return cp, nil, err
	}
	s, err := openSession(c)
	return cp, s, err
}

// notFoundError marks "no such object" (exit code 3).
type notFoundError struct{ error }

func (e notFoundError) Unwrap() error { return e.error }

// classify wraps errors scripts act on with their exit code.
func classify(err error) error {
	if errors.Is(err, ring.ErrNotFound) {
		return notFoundError{err}
	}
	return err
}

// unreachableHint adds what to do when no peer answered.
func unreachableHint(err error) error {
	if errors.Is(err, dht.ErrNoPeers) || errors.Is(err, dht.ErrUnreachable) {
		return fmt.Errorf("%w\n(no ring peer answered: is the ring running? check --peer, or start `voicering demo`)", err)
	}
	return err
}

// isTerminal reports whether f is a terminal, where progress is shown.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress returns a progress bar of total bytes on stderr when stderr is
// a terminal, and nil (no output) otherwise.
func progress(c *cli.Context, total int64, what string) *progressbar.ProgressBar {
	if !isTerminal(c.App.ErrWriter) || c.Bool("quiet") {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(c.App.ErrWriter),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func timeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "give up after this long"}
}

func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar, even on a terminal"}
}
