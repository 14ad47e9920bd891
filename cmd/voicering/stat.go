package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

func statCommand() *cli.Command {
	return &cli.Command{
		Name:      "stat",
		Usage:     "show where each shard of each segment of a file lives, and whether it answers",
		ArgsUsage: "CAP",
		Flags:     []cli.Flag{peerFlag(), caFlag(), identityFlag(), logLevelFlag(), timeoutFlag(), &cli.BoolFlag{Name: "json", Usage: "print as JSON"}},
		Action: func(c *cli.Context) error {
			cp, s, err := capSession(c)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.Objects().Stat(s.ctx, cp)
			if err != nil {
				return classify(unreachableHint(err))
			}
			if c.Bool("json") {
				e := json.NewEncoder(out(c))
				e.SetIndent("", "  ")
				return e.Encode(st)
			}
			w := tabwriter.NewWriter(out(c), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "size\t%d bytes, %s, %d segments coded %s\n", st.Size, orNone(st.Type), len(st.Segments), st.Scheme)
			for _, s := range st.Segments {
				health := "whole"
				if len(s.Missing) > 0 {
					health = fmt.Sprintf("missing shards %v (%d of %d good; %d needed)", s.Missing, s.Good, st.Manifest.Scheme.Total, st.Manifest.Scheme.Needed)
				}
				fmt.Fprintf(w, "segment %d\t%s\n", s.Segment, health)
				for _, sh := range s.Shards {
					state := "ok"
					if !sh.Good {
						state = "CORRUPT (does not match the manifest)"
					}
					fmt.Fprintf(w, "  shard %d\t%s  %s  position %d  %s\n", sh.Shard, sh.Peer.ID.Short(), sh.Peer.Addr, sh.Position, state)
				}
				for _, p := range s.Unreachable {
					fmt.Fprintf(w, "  unreachable\t%s  %s\n", p.ID.Short(), p.Addr)
				}
			}
			return w.Flush()
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "no content type"
	}
	return s
}
