package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voicering/voicering/sipvm/media"
)

// vmCLI runs the voicering binary with env and args and returns stdout,
// stderr and the exit code.
func vmCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run voicering %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// startDemo runs `voicering demo` with its data in dir and returns its
// SIP address once the ring is ready.
func startDemo(t *testing.T, env []string, args ...string) string {
	t.Helper()
	demo := exec.Command(binary, append([]string{"demo", "--log-level", "warn"}, args...)...)
	demo.Env = env
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr, printed syncBuffer
	demo.Stderr = &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		demo.Process.Signal(syscall.SIGINT)
		if err := demo.Wait(); err != nil {
			t.Errorf("demo after Ctrl-C: %v\n%s", err, stderr.String())
		}
	})
	sipLine := regexp.MustCompile(`^SIP: registrar and proxy for \S+ on (\S+) `)
	sipAddr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			printed.Write([]byte(sc.Text() + "\n"))
			if m := sipLine.FindStringSubmatch(sc.Text()); m != nil {
				sipAddr <- m[1]
			}
		}
	}()
	select {
	case a := <-sipAddr:
		return a
	case <-time.After(90 * time.Second):
		t.Fatalf("the demo did not report its SIP address in 90s; it printed:\n%s\nstderr:\n%s", printed.String(), stderr.String())
	}
	return ""
}

// TestVMVerbs leaves a message through the demo's SIP peer with sipp
// (testdata/sipp/voicemail.xml streaming the test speech), then lists,
// fetches and removes it with voicering vm, finding the demo's peers and
// voicemail key without flags.
func TestVMVerbs(t *testing.T) {
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatalf("this test needs sipp: install Debian's sip-tester (apt-get install sip-tester), or run `make test`")
	}
	dir := t.TempDir()
	env := append(os.Environ(), "VOICERING_DEMO="+dir)
	sipAddr := startDemo(t, env, "--peers", "6", "--sip", "127.0.0.1:0")
	if st, err := os.Stat(filepath.Join(dir, "voicemail.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the demo's voicemail key: %v, %v, want a file of mode 0600", st, err)
	}

	// bob's call to alice, who is not registered, goes to voicemail.
	pcmu, err := os.ReadFile("../../testdata/audio/speech.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	speech := time.Duration(len(pcmu)) * time.Second / media.SampleRate
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "speech.pcmu"), pcmu, 0o644); err != nil {
		t.Fatal(err)
	}
	scenario, _ := filepath.Abs("../../testdata/sipp/voicemail.xml")
	sippCmd := exec.CommandContext(t.Context(), sipp, "-i", "127.0.0.1", "-p", strconv.Itoa(freeUDP(t)), "-nostdin",
		"-timeout", "30s", "-timeout_error", "-sf", scenario, "-s", "alice", "-set", "domain", "voicering.local",
		"-d", strconv.Itoa(int((speech + 500*time.Millisecond).Milliseconds())), "-m", "1", sipAddr)
	sippCmd.Dir = work
	if out, err := sippCmd.CombinedOutput(); err != nil {
		t.Fatalf("sipp: %v\n%s", err, out)
	}

	var list []vmListing
	waitFor(t, "vm ls to show the message", 20*time.Second, func() error {
		out, errOut, code := vmCLI(t, env, "vm", "ls", "alice", "--json")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
			return fmt.Errorf("got %q (%v), want one message", out, err)
		}
		return nil
	})
	msg := list[0]
	if d := time.Duration(msg.Duration*float64(time.Second)) - speech; d < -100*time.Millisecond || d > 100*time.Millisecond || msg.Folder != "new" {
		t.Errorf("vm ls: got %+v, want a new message of %s ± 100ms", msg, speech)
	}
	if len(msg.ID) != 8 {
		t.Errorf("vm ls: ID %q, want 8 hex digits", msg.ID)
	}

	wav := filepath.Join(t.TempDir(), "m.wav")
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"ls as a table", []string{"vm", "ls", "alice"}, 0, msg.ID},
		{"ls of a user with no messages", []string{"vm", "ls", "bob"}, 0, ""},
		{"ls of an unknown user", []string{"vm", "ls", "carol"}, 3, ""},
		{"get, flags after the arguments", []string{"vm", "get", "alice", msg.ID, "-o", wav}, 0, ""},
		{"get an unknown message", []string{"vm", "get", "alice", "00000000", "-o", wav + ".x"}, 3, ""},
		{"get without MSG", []string{"vm", "get", "alice"}, 2, ""},
		{"ls with another key", []string{"vm", "ls", "alice", "--vm-key", filepath.Join(work, "other.key")}, 1, ""},
	}
	if _, _, code := vmCLI(t, env, "vm", "key", "init", "--out", filepath.Join(work, "other.key")); code != 0 {
		t.Fatalf("vm key init: exit %d", code)
	}
	for _, tc := range cases {
		out, errOut, code := vmCLI(t, env, tc.args...)
		if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
			t.Errorf("%s: got exit %d, %q (stderr %q), want exit %d, %q", tc.name, code, out, errOut, tc.wantCode, tc.wantOut)
		}
	}

	// The WAV is whole: real sizes in its header, the speech's length.
	b, err := os.ReadFile(wav)
	if err != nil {
		t.Fatal(err)
	}
	size, err := media.ReadHeader(bytes.NewReader(b))
	if err != nil || size != int64(len(b)-44) {
		t.Fatalf("%s: data size %d, %v, want %d (sizes patched)", wav, size, err, len(b)-44)
	}
	if d := time.Duration(size/2) * time.Second / media.SampleRate; d-speech < -100*time.Millisecond || d-speech > 100*time.Millisecond {
		t.Errorf("%s lasts %s, want %s ± 100ms", wav, d, speech)
	}

	// The demo's peer serves SIP voicemail: rm has it update the lamps,
	// with nothing to warn about.
	if out, errOut, code := vmCLI(t, env, "vm", "rm", "alice", msg.ID); code != 0 || !strings.Contains(out, "removed message "+msg.ID) || errOut != "" {
		t.Fatalf("vm rm: exit %d, %q, stderr %q, want removed and no warning", code, out, errOut)
	}
	if out, _, code := vmCLI(t, env, "vm", "ls", "alice", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("vm ls after rm: exit %d, %q, want []", code, out)
	}
	if _, _, code := vmCLI(t, env, "vm", "rm", "alice", msg.ID); code != 3 {
		t.Errorf("vm rm again: exit %d, want 3", code)
	}
}

func freeUDP(t *testing.T) int {
	t.Helper()
	_, p, _ := strings.Cut(freeAddr(t), ":") // a free TCP port is almost always a free UDP port too
	n, _ := strconv.Atoi(p)
	return n
}

// A SIP peer killed (SIGKILL) while a caller speaks deposits what it had
// recorded once it runs again: the recording was spooled on its disk as
// it came, and the restarted peer stores it on the ring.
func TestDepositSurvivesSIGKILL(t *testing.T) {
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatalf("this test needs sipp: install Debian's sip-tester (apt-get install sip-tester), or run `make test`")
	}
	key := filepath.Join(t.TempDir(), "vm.key")
	if _, errOut, code := runCLI(t, nil, "vm", "key", "init", "--out", key); code != 0 {
		t.Fatalf("vm key init: %s", errOut)
	}
	sipAddr := freeAddr(t)
	r := startProcRing(t, 6, 100*time.Millisecond) // 4-of-6: six peers
	sp := r.procs[0]
	r.kill(0)
	sp.extra = []string{"--sip", sipAddr, "--domain", "voicering.local", "--vm-key", key}
	r.start(0)
	waitFor(t, "the SIP peer to serve", 30*time.Second, func() error {
		if !strings.Contains(sp.log.String(), "SIP serving") {
			return errNotYet
		}
		return nil
	})
	cli := []string{"--peer", sp.addr, "--domain", "voicering.local"}
	waitFor(t, "user add to succeed", 30*time.Second, func() error {
		out, errOut, code := runCLI(t, nil, append([]string{"user", "add", "--password", "x"}, append(cli, "alice")...)...)
		if code != 0 {
			return &cliErr{out + errOut}
		}
		return nil
	})

	// bob's call streams the speech and would hang up 20 s later; the
	// peer dies once 2 s of it are on its disk.
	pcmu, err := os.ReadFile("../../testdata/audio/speech.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "speech.pcmu"), pcmu, 0o644); err != nil {
		t.Fatal(err)
	}
	scenario, _ := filepath.Abs("../../testdata/sipp/voicemail.xml")
	sippCmd := exec.Command(sipp, "-i", "127.0.0.1", "-p", strconv.Itoa(freeUDP(t)), "-nostdin",
		"-timeout", "60s", "-sf", scenario, "-s", "alice", "-set", "domain", "voicering.local", "-d", "20000", "-m", "1", sipAddr)
	sippCmd.Dir = work
	if err := sippCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sippCmd.Process.Kill(); sippCmd.Wait() })
	spool := filepath.Join(sp.dir, "voicemail-spool")
	const cut = 2 * media.SampleRate // samples on disk when the peer dies
	waitFor(t, "2 s of the message in the spool", 40*time.Second, func() error {
		wavs, _ := filepath.Glob(filepath.Join(spool, "*.wav"))
		if len(wavs) != 1 {
			return fmt.Errorf("spool holds %v", wavs)
		}
		if fi, err := os.Stat(wavs[0]); err != nil || fi.Size() < media.HeaderSize+2*cut {
			return fmt.Errorf("spooled %v bytes", fi)
		}
		return nil
	})
	r.kill(0)
	sippCmd.Process.Kill()

	r.start(0)
	waitFor(t, "the restarted peer to say what its spool holds", 30*time.Second, func() error {
		if !strings.Contains(sp.log.String(), "wait in the spool") {
			return errNotYet
		}
		return nil
	})
	var list []vmListing
	env := append(os.Environ(), "VOICERING_VM_KEY="+key)
	waitFor(t, "the restarted peer to store the deposit", 60*time.Second, func() error {
		out, errOut, code := vmCLI(t, env, append([]string{"vm", "ls", "--json"}, append(cli, "alice")...)...)
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
			return fmt.Errorf("got %q (%v), want one message", out, err)
		}
		return nil
	})
	speech := time.Duration(len(pcmu)) * time.Second / media.SampleRate
	if got := time.Duration(list[0].Duration * float64(time.Second)); got < cut*time.Second/media.SampleRate || got >= speech {
		t.Errorf("the message lasts %s, want from 2 s to less than the whole %s (the peer died mid-call)", got, speech)
	}
	wav := filepath.Join(work, "msg.wav")
	if _, errOut, code := vmCLI(t, env, append([]string{"vm", "get", "-q", "-o", wav}, append(cli, "alice", list[0].ID)...)...); code != 0 {
		t.Fatalf("vm get: %s", errOut)
	}
	f, err := os.Open(wav)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := media.ReadPCM(f)
	if err != nil {
		t.Fatal(err)
	}
	want := media.PCMU.Decode(nil, pcmu)
	if len(got) < cut || !slices.Equal(got, want[:len(got)]) {
		t.Errorf("the message's %d samples are not the first of what bob said", len(got))
	}
	if files, _ := os.ReadDir(spool); len(files) != 0 {
		t.Errorf("the spool still holds %d files", len(files))
	}
}
