package main

import (
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "fetch the file a cap names and write it to -o FILE (or stdout)",
		ArgsUsage: "CAP",
		Flags: []cli.Flag{
			peerFlag(), caFlag(), identityFlag(), logLevelFlag(), timeoutFlag(), quietFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "`FILE` to write, - for stdout; written whole or not at all"},
		},
		Action: func(c *cli.Context) error {
			cp, s, err := capSession(c)
			if err != nil {
				return err
			}
			defer s.Close()
			m, err := s.Objects().Manifest(s.ctx, cp)
			if err != nil {
				return classify(unreachableHint(err))
			}
			// Write to a temporary file beside the target and rename it
			// into place at the end, so a failed get leaves no partial file.
			var w io.Writer = out(c)
			var tmp *os.File
			if o := c.String("output"); o != "-" {
				if tmp, err = os.CreateTemp(filepath.Dir(o), "."+filepath.Base(o)+".part-*"); err != nil {
					return err
				}
				defer os.Remove(tmp.Name())
				defer tmp.Close()
				w = tmp
			}
			if bar := progress(c, m.Size, "get"); bar != nil {
				w = io.MultiWriter(w, bar)
				defer bar.Finish()
			}
			if err := s.Objects().Read(s.ctx, cp, m, w); err != nil {
				return classify(unreachableHint(err))
			}
			if tmp != nil {
				if err := tmp.Close(); err != nil {
					return err
				}
				return os.Rename(tmp.Name(), c.String("output"))
			}
			return nil
		},
	}
}
