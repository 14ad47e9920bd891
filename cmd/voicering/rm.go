package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/coding"
)

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove the file a cap names from the ring",
		ArgsUsage: "CAP",
		Flags:     []cli.Flag{peerFlag(), caFlag(), identityFlag(), logLevelFlag(), timeoutFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{fmt.Errorf("rm takes one CAP, got %d arguments", c.NArg())}
			}
			cp, err := coding.ParseCap(c.Args().First())
			if err != nil {
				return usageError{err}
			}
			log, err := logger(c)
			if err != nil {
				return err
			}
			cl, err := newClient(c, log)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := withTimeout(c)
			defer cancel()
			return classify(unreachableHint(cl.Objects().Remove(ctx, cp)))
		},
	}
}
