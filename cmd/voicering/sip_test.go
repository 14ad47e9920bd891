package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSIPNodeAndUsers runs a `voicering node --sip` process and manages
// accounts with `voicering user`.
func TestSIPNodeAndUsers(t *testing.T) {
	addr, sipAddr := freeAddr(t), freeAddr(t)
	log := &syncBuffer{}
	cmd := exec.Command(binary, "node", "--data", filepath.Join(t.TempDir(), "p"), "--listen", addr,
		"--sip", sipAddr, "--domain", "example.org", "--tick", "50ms")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "the node to serve SIP", 20*time.Second, func() error {
		if !strings.Contains(log.String(), "SIP serving") {
			return errNotYet
		}
		return nil
	})
	peer := []string{"--peer", addr, "--domain", "example.org"}
	waitFor(t, "user add to succeed", 20*time.Second, func() error {
		out, errOut, code := runCLI(t, []byte("s3cret\n"), append([]string{"user", "add", "--password-stdin"}, append(peer, "alice")...)...)
		if code != 0 || !strings.Contains(out, "added sip:alice@example.org") {
			return &cliErr{out + errOut}
		}
		return nil
	})
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"ls lists alice", []string{"user", "ls"}, 0, "sip:alice@example.org\n"},
		{"add without password", []string{"user", "add", "bob"}, 2, ""},
		{"bad name", []string{"user", "add", "--password", "x", "b@d"}, 2, ""},
		{"rm alice", []string{"user", "rm", "alice"}, 0, "removed sip:alice@example.org\n"},
		{"rm again", []string{"user", "rm", "alice"}, 3, ""},
		{"ls empty", []string{"user", "ls"}, 0, ""},
	}
	for _, tc := range cases {
		args := append(append(tc.args[:2:2], peer...), tc.args[2:]...)
		out, errOut, code := runCLI(t, nil, args...)
		if code != tc.wantCode || (tc.wantCode == 0 && out != tc.wantOut) {
			t.Errorf("%s: got exit %d, %q (stderr %q), want exit %d, %q", tc.name, code, out, errOut, tc.wantCode, tc.wantOut)
		}
	}
}

type cliErr struct{ s string }

func (e *cliErr) Error() string { return e.s }

var errNotYet = &cliErr{"not yet"}
