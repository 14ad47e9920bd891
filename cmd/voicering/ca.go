package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/dht"
)

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "make a ring CA and issue peer certificates, to close a ring to peers it did not admit",
		Description: "A closed ring (every `voicering node` started with --ca FILE) admits only peers and clients\n" +
			"whose certificate the ring's CA issued: the defence against an attacker starting many peers.\n" +
			"Keep the CA's key (ca.key) off the peers.",
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "create a ring CA in a directory",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Required: true, Usage: "`DIR` to create ca.crt and ca.key in"},
					&cli.StringFlag{Name: "name", Value: "voicering ring CA", Usage: "the CA's common name"},
				},
				Action: func(c *cli.Context) error {
					if _, err := dht.CreateCA(c.String("dir"), c.String("name")); err != nil {
						return err
					}
					fmt.Fprintf(out(c), "created %s (give it to every peer as --ca) and %s (keep it off the peers)\n",
						filepath.Join(c.String("dir"), dht.CACertFile), filepath.Join(c.String("dir"), dht.CAKeyFile))
					return nil
				},
			},
			{
				Name:  "issue",
				Usage: "issue a certificate to the peer (or client) whose data directory is given",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca-dir", Required: true, Usage: "`DIR` holding the CA (from ca init)"},
					&cli.StringFlag{Name: "data", Required: true, Usage: "the peer's data `DIR`; its key is created if missing"},
					&cli.DurationFlag{Name: "valid", Value: 365 * 24 * time.Hour, Usage: "how long the certificate is valid"},
				},
				Action: func(c *cli.Context) error {
					ca, err := dht.LoadCA(c.String("ca-dir"))
					if err != nil {
						return err
					}
					id, err := dht.LoadIdentity(c.String("data"))
					if err != nil {
						return err
					}
					cert, err := ca.Issue(id.PublicKey(), c.Duration("valid"))
					if err != nil {
						return err
					}
					path := filepath.Join(c.String("data"), dht.CertFile)
					if err := os.WriteFile(path, cert, 0o644); err != nil {
						return err
					}
					fmt.Fprintf(out(c), "issued %s for node %s\n", path, id.ID())
					return nil
				},
			},
		},
	}
}
