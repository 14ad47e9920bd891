package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/voicering/voicering/dht"
)

// run runs the CLI in-process with args and returns stdout and the exit code
// main would use.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	app := newApp()
	var stdout, stderr bytes.Buffer
	app.Writer, app.ErrWriter = &stdout, &stderr
	err := app.RunContext(context.Background(), flagsFirst(app, append([]string{"voicering"}, args...)))
	if err != nil {
		return stdout.String() + err.Error(), exitCode(err)
	}
	return stdout.String(), 0
}

func TestHelpListsOnlyBuiltVerbs(t *testing.T) {
	got, code := run(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, verb := range []string{"demo", "node", "ring", "put", "get", "stat", "rm", "ca", "version"} {
		if !strings.Contains(got, "   "+verb+" ") {
			t.Errorf("--help does not list %q:\n%s", verb, got)
		}
	}
}

func TestVersion(t *testing.T) {
	got, code := run(t, "version", "--json")
	if code != 0 {
		t.Fatalf("version exit %d: %s", code, got)
	}
	var v struct {
		Version        string `json:"version"`
		Protocol       int    `json:"protocol"`
		ManifestFormat int    `json:"manifest_format"`
	}
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatalf("version --json is not JSON: %v\n%s", err, got)
	}
	if v.Version != Version || v.ManifestFormat != 1 || v.Protocol != dht.ProtocolVersion {
		t.Errorf("version %q protocol %d format %d, want %q, %d and 1", v.Version, v.Protocol, v.ManifestFormat, Version, dht.ProtocolVersion)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown verb", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"version", "--bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, code := run(t, tt.args...)
			if code != 2 || !strings.Contains(got, tt.want) {
				t.Fatalf("exit %d, output %q; want exit 2 saying %q", code, got, tt.want)
			}
		})
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	app := newApp()
	tests := []struct{ in, want []string }{
		{[]string{"voicering", "get", "CAP", "-o", "f"}, []string{"voicering", "get", "-o", "f", "CAP"}},
		{[]string{"voicering", "put", "-", "--json", "-n", "8"}, []string{"voicering", "put", "--json", "-n", "8", "-"}},
		{[]string{"voicering", "get", "--output=f", "CAP"}, []string{"voicering", "get", "--output=f", "CAP"}},
		{[]string{"voicering", "put", "--", "-odd-name"}, []string{"voicering", "put", "--", "-odd-name"}},
		{[]string{"voicering", "--help"}, []string{"voicering", "--help"}},
		{[]string{"voicering", "--cpuprofile", "p", "get", "CAP", "-o", "f"}, []string{"voicering", "--cpuprofile", "p", "get", "-o", "f", "CAP"}},
	}
	for _, tt := range tests {
		if got := flagsFirst(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("flagsFirst(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
