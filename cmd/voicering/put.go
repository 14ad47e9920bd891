package main

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/coding"
)

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "store a file (or stdin) on the ring and print its cap, the string that reads it back",
		ArgsUsage: "FILE|-",
		Description: "The file is encrypted, cut into segments and Reed–Solomon coded: any --needed of the --total shards\n" +
			"of a segment rebuild it, so losing up to total−needed peers loses nothing. Keep the cap: it is the\n" +
			"only way to read the file, and no storage peer can read it without the cap.",
		Flags: []cli.Flag{
			peerFlag(), caFlag(), identityFlag(), logLevelFlag(), timeoutFlag(), quietFlag(),
			&cli.IntFlag{Name: "needed", Aliases: []string{"k"}, Value: coding.DefaultScheme.Needed, Usage: "shards needed to rebuild a segment"},
			&cli.IntFlag{Name: "total", Aliases: []string{"n"}, Value: coding.DefaultScheme.Total, Usage: "shards each segment is coded into, one per peer"},
			&cli.StringFlag{Name: "type", Aliases: []string{"t"}, Usage: "MIME type to record (default: guessed from the file name)"},
			&cli.BoolFlag{Name: "json", Usage: "print cap, size, scheme and segments as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{fmt.Errorf("put takes one FILE (or - for stdin), got %d arguments", c.NArg())}
			}
			scheme := coding.Scheme{Needed: c.Int("needed"), Total: c.Int("total")}
			if err := scheme.Validate(); err != nil {
				return usageError{fmt.Errorf("--needed/--total: %w", err)}
			}
			name := c.Args().First()
			var in io.Reader = os.Stdin
			var size int64 = -1
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
					size = fi.Size()
				}
				in = f
			}
			ctype := c.String("type")
			if ctype == "" && name != "-" {
				ctype = mime.TypeByExtension(filepath.Ext(name))
			}
			s, err := openSession(c)
			if err != nil {
				return err
			}
			defer s.Close()
			if bar := progress(c, size, "put"); bar != nil {
				in = io.TeeReader(in, bar)
				defer bar.Finish()
			}
			cp, m, err := s.Objects().Put(s.ctx, in, coding.Params{Scheme: scheme, ContentType: ctype})
			if err != nil {
				return unreachableHint(err)
			}
			if c.Bool("json") {
				e := json.NewEncoder(out(c))
				e.SetIndent("", "  ")
				return e.Encode(struct {
					Cap      string `json:"cap"`
					Size     int64  `json:"size"`
					Scheme   string `json:"scheme"`
					Segments int    `json:"segments"`
					Type     string `json:"content_type,omitempty"`
				}{cp.String(), m.Size, m.Scheme.String(), len(m.ShardHashes), m.ContentType})
			}
			_, err = fmt.Fprintln(out(c), cp)
			return err
		},
	}
}
