package sipvm_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/sipvm"
)

// sippPath returns the sipp binary or fails the test saying how to get it.
func sippPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatalf("this test needs sipp (SIPp, the SIP traffic generator): install Debian's sip-tester (apt-get install sip-tester), or run `make test`, which installs it when run as root")
	}
	return p
}

func sippDir(t *testing.T) string {
	d, err := filepath.Abs("../testdata/sipp")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runSipp runs sipp with args in a fresh directory, giving up after 20 s,
// and fails with its output if it fails.
func runSipp(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	runSippIn(t, ctx, t.TempDir(), 20*time.Second, args...)
}

// runSippIn runs sipp in dir (where a scenario's rtp_stream files are),
// giving up after timeout, and fails with its output if it fails.
func runSippIn(t *testing.T, ctx context.Context, dir string, timeout time.Duration, args ...string) {
	t.Helper()
	args = append([]string{"-i", "127.0.0.1", "-p", strconv.Itoa(freeUDPPort(t)), "-nostdin", "-timeout", strconv.Itoa(int(timeout/time.Second)) + "s", "-timeout_error", "-max_recv_loops", "1000"}, args...)
	errFile := filepath.Join(t.TempDir(), "errors.log")
	args = append(args, "-trace_err", "-error_file", errFile)
	cmd := exec.CommandContext(ctx, sippPath(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		errs, _ := os.ReadFile(errFile)
		t.Fatalf("sipp %v: %v\n%s\nsipp's errors:\n%s", args, err, lastLinesOf(string(out), 30), lastLinesOf(string(errs), 40))
	}
}

func lastLinesOf(s string, n int) string {
	for i, c := 0, 0; i < len(s); i++ {
		if s[len(s)-1-i] == '\n' {
			if c++; c == n {
				return s[len(s)-i:]
			}
		}
	}
	return s
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestSippInterop runs the sipp scenarios of testdata/sipp against a
// 4-peer ring: digest REGISTER through one peer, then a call from a sipp
// UAC through another to a sipp UAS bound to alice.
func TestSippInterop(t *testing.T) {
	sippPath(t)
	r := newSIPRing(t, 4, func(c *sipvm.Config) { c.Algorithms = []string{"MD5", "SHA-256"} }) // sipp 3.6 answers only the first challenge, and only MD5
	ctx := t.Context()
	for _, u := range []string{"alice", "carol"} {
		if err := r.sip(0).Accounts().Add(ctx, u, domain, u+"-secret"); err != nil {
			t.Fatal(err)
		}
	}
	dir := sippDir(t)
	t.Run("register", func(t *testing.T) {
		runSipp(t, ctx, "-sf", filepath.Join(dir, "register.xml"), "-inf", filepath.Join(dir, "users.csv"), "-au", "alice", "-ap", "alice-secret", "-m", "3", r.sip(1).Addr())
		if bs, err := r.sip(3).Lookup(ctx, "sip:alice@"+domain); err != nil || len(bs) != 1 {
			t.Fatalf("after sipp registered alice: got %v, %v, want one binding", bs, err)
		}
	})
	t.Run("call", func(t *testing.T) {
		uasPort := freeUDPPort(t)
		uas := exec.CommandContext(ctx, sippPath(t), "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-nostdin",
			"-sf", filepath.Join(dir, "uas.xml"), "-m", "1", "-timeout", "20s", "-timeout_error")
		uas.Dir = t.TempDir()
		out := &syncBuf{}
		uas.Stdout, uas.Stderr = out, out
		if err := uas.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- uas.Wait() }()
		ph := newPhone(t, "carol")
		contact := sip.NewHeader("Contact", "<sip:carol@127.0.0.1:"+strconv.Itoa(uasPort)+">")
		if res, err := ph.register(r.sip(2).Addr(), "carol", "carol-secret", 600, contact); err != nil || res.StatusCode != 200 {
			t.Fatalf("bind carol to the sipp UAS: got %v, %v", res, err)
		}
		runSipp(t, ctx, "-sf", filepath.Join(dir, "uac.xml"), "-s", "carol", "-set", "domain", domain, "-m", "1", r.sip(3).Addr())
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("sipp UAS: %v\n%s", err, lastLinesOf(out.String(), 30))
			}
		case <-time.After(20 * time.Second):
			uas.Process.Kill()
			t.Fatalf("sipp UAS did not finish\n%s", lastLinesOf(out.String(), 30))
		}
	})
}
