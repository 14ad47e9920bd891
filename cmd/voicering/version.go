package main

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the protocol and format versions it speaks",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print as JSON"}},
		Action: func(c *cli.Context) error {
			v := struct {
				Version        string `json:"version"`
				Protocol       int    `json:"protocol"`
				ManifestFormat int    `json:"manifest_format"`
				Cap            string `json:"cap_prefix"`
				Go             string `json:"go"`
			}{Version, dht.ProtocolVersion, coding.FormatVersion, coding.CapPrefix, runtime.Version()}
			if c.Bool("json") {
				e := json.NewEncoder(out(c))
				e.SetIndent("", "  ")
				return e.Encode(v)
			}
			_, err := fmt.Fprintf(out(c), "voicering %s\nring protocol v%d, manifest format %d, caps %q\n%s\n", v.Version, v.Protocol, v.ManifestFormat, v.Cap, v.Go)
			return err
		},
	}
}
