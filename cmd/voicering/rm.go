package main

import (
	"github.com/urfave/cli/v2"
)

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove the file a cap names from the ring",
		ArgsUsage: "CAP",
		Flags:     []cli.Flag{peerFlag(), caFlag(), identityFlag(), logLevelFlag(), timeoutFlag()},
		Action: func(c *cli.Context) error {
			cp, s, err := capSession(c)
			if err != nil {
				return err
			}
			defer s.Close()
			return classify(unreachableHint(s.Objects().Remove(s.ctx, cp)))
		},
	}
}
