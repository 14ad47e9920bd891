package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

func ringCommand() *cli.Command {
	return &cli.Command{
		Name:  "ring",
		Usage: "show a peer's view (the first --peer) of the ring: its ID, neighbours with RTTs, estimated size, repair state",
		Flags: []cli.Flag{
			peerFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print as JSON"},
			caFlag(), identityFlag(), logLevelFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "give up after this long"},
		},
		Action: func(c *cli.Context) error {
			s, err := openSession(c)
			if err != nil {
				return err
			}
			defer s.Close()
			addrs, _ := peerAddrs(c)
			st, err := s.Status(s.ctx, addrs[0])
			if err != nil {
				return unreachableHint(err)
			}
			if c.Bool("json") {
				e := json.NewEncoder(out(c))
				e.SetIndent("", "  ")
				return e.Encode(st)
			}
			w := tabwriter.NewWriter(out(c), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "peer\t%s\n", st.ID)
			fmt.Fprintf(w, "address\t%s\n", st.Addr)
			fmt.Fprintf(w, "protocol\tv%d\n", st.ProtocolVersion)
			fmt.Fprintf(w, "joined\t%v (up %s)\n", st.Joined, st.Uptime.Round(time.Second))
			fmt.Fprintf(w, "ring size\t~%.0f peers (estimated from successor density)\n", st.EstimatedSize)
			fmt.Fprintf(w, "fingers\t%d distinct peers\n", st.Fingers)
			if st.Predecessor != nil {
				fmt.Fprintf(w, "predecessor\t%s  %s  %s  rtt %s\n", st.Predecessor.ID.Short(), st.Predecessor.Addr, st.Predecessor.State, st.Predecessor.RTT.Round(time.Microsecond))
			}
			for i, s := range st.Successors {
				fmt.Fprintf(w, "successor %d\t%s  %s  %s  rtt %s\n", i+1, s.ID.Short(), s.Addr, s.State, s.RTT.Round(time.Microsecond))
			}
			for _, id := range st.Suspected {
				fmt.Fprintf(w, "suspected\t%s\n", id.Short())
			}
			m := st.Maintain
			fmt.Fprintf(w, "repair\t%d passes, %d segments under-redundant in the last, %d shards rebuilt, %d moved, %d dropped\n",
				m.Passes, m.UnderRedundant, m.ShardsRebuilt, m.ShardsMoved, m.ShardsDropped)
			fmt.Fprintf(w, "hand-off\t%d records pushed to new replicas\n", m.RecordsPushed)
			return w.Flush()
		},
	}
}
