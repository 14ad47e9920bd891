package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs `voicering demo` as a user would (no flags; the data
// directory from the environment), then stores and reads a file through it
// without naming a peer, and stops it with Ctrl-C.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	env := append(os.Environ(), "VOICERING_DEMO="+dir)
	demo := exec.Command(binary, "demo", "--log-level", "warn")
	demo.Env = env
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	demo.Stderr = &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if demo.ProcessState == nil {
			demo.Process.Kill()
			demo.Wait()
		}
	})
	ready := make(chan string, 1)
	var printed syncBuffer
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			printed.Write([]byte(sc.Text() + "\n"))
			if strings.HasPrefix(sc.Text(), "ring ready") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case line := <-ready:
		t.Log(line)
	case <-time.After(90 * time.Second):
		t.Fatalf("the demo did not report a ready ring in 90s; it printed:\n%s\nstderr:\n%s", printed.String(), stderr.String())
	}

	data := bytes.Repeat([]byte("a voicemail, or any media file. "), 10_000)
	cli := func(stdin []byte, args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		if err := cmd.Run(); err != nil {
			t.Fatalf("voicering %v: %v\n%s", args, err, errb.String())
		}
		return out.String(), errb.String()
	}
	cp, _ := cli(data, "put", "-")
	got, _ := cli(nil, "get", strings.TrimSpace(cp))
	if got != string(data) {
		t.Fatalf("get through the demo returned %d bytes, want the %d put", len(got), len(data))
	}
	ring, _ := cli(nil, "ring")
	if !strings.Contains(ring, "successor 1") {
		t.Errorf("voicering ring against the demo printed no successors:\n%s", ring)
	}

	// Ctrl-C: the demo leaves the ring, exits 0 and forgets its addresses;
	// its data stays for the next start.
	demo.Process.Signal(syscall.SIGINT)
	if err := demo.Wait(); err != nil {
		t.Fatalf("demo after Ctrl-C: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, demoPeersFile)); !os.IsNotExist(err) {
		t.Errorf("the demo left %s behind (%v)", demoPeersFile, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "peer-0", "node.key")); err != nil {
		t.Errorf("the demo's data is not kept for the next start: %v", err)
	}
}
