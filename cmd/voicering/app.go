package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Version is this build's release version.
const Version = "0.1.0-dev"

// newApp returns the command-line application. Each verb lives in a file of
// its own; only verbs that work are listed.
func newApp() *cli.App {
	app := &cli.App{
		Name:    "voicering",
		Usage:   "a peer-to-peer voicemail and media store with no central server",
		Version: Version,
		Description: "Every recording is encrypted, cut into segments and Reed–Solomon coded into shards\n" +
			"spread over the peers of a Chord ring, so losing peers loses nothing and no storage\n" +
			"peer can listen to what it stores.",
		HideVersion:          true, // `voicering version` says more
		EnableBashCompletion: true,
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
		Commands: []*cli.Command{
			demoCommand(),
			nodeCommand(),
			ringCommand(),
			putCommand(),
			getCommand(),
			statCommand(),
			rmCommand(),
			benchCommand(),
			caCommand(),
			userCommand(),
			vmCommand(),
			versionCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unknown command %q; run voicering --help for the list", c.Args().First())}
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write a CPU profile of this command to `FILE` (for go tool pprof)"},
		},
		Before:         startProfile,
		After:          stopProfile,
		ExitErrHandler: func(*cli.Context, error) {}, // main prints and exits
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = app.OnUsageError
	}
	return app
}

// flagsFirst moves a verb's flags before its arguments, so that
// `voicering get CAP -o FILE` works as `voicering get -o FILE CAP` does
// (urfave/cli stops reading flags at the first argument). A lone "-"
// (stdin) is an argument; everything after "--" is left as it is.
func flagsFirst(app *cli.App, args []string) []string {
	// The verb follows the global flags (--cpuprofile FILE).
	v := 1
	for v < len(args) && strings.HasPrefix(args[v], "-") {
		if !strings.Contains(args[v], "=") {
			v++ // the global flags all take a value
		}
		v++
	}
	if v+1 >= len(args) {
		return args
	}
	cmd := app.Command(args[v])
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, rest []string
	in := args[v+1:]
	for i := 0; i < len(in); i++ {
		a := in[i]
		switch {
		case a == "--":
			rest = append(rest, in[i:]...)
			i = len(in)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") && takesValue[name] && i+1 < len(in) {
				flags = append(flags, in[i+1])
				i++
			}
		default:
			rest = append(rest, a)
		}
	}
	return slices.Concat(args[:v+1], flags, rest)
}

// usageError marks an error in how voicering was called (exit code 2), as
// opposed to a failure doing what was asked (exit code 1).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitCode maps an error to the process exit status scripts rely on:
// 2 for a usage error, 3 when the object asked for does not exist, 1 for
// any other failure.
func exitCode(err error) int {
	var u usageError
	var nf notFoundError
	switch {
	case errors.As(err, &u):
		return 2
	case errors.As(err, &nf):
		return 3
	}
	return 1
}

// out returns where a command writes its results.
func out(c *cli.Context) io.Writer { return c.App.Writer }

// startProfile starts the CPU profile --cpuprofile asks for.
func startProfile(c *cli.Context) error {
	f := c.String("cpuprofile")
	if f == "" {
		return nil
	}
	w, err := os.Create(f)
	if err != nil {
		return err
	}
	c.App.Metadata = map[string]any{"profile": w}
	return pprof.StartCPUProfile(w)
}

// stopProfile ends the CPU profile, if one runs.
func stopProfile(c *cli.Context) error {
	w, ok := c.App.Metadata["profile"].(*os.File)
	if !ok {
		return nil
	}
	pprof.StopCPUProfile()
	return w.Close()
}
