package sipvm_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/sipvm"
)

// TestRingCall is the scenario: alice registers through peer 1,
// bob calls her through peer 4, both hang up; then refresh, unregister and
// expiry, refused credentials, and a peer lost.
func TestRingCall(t *testing.T) {
	r := newSIPRing(t, 5, nil)
	ctx := t.Context()
	acc := r.sip(0).Accounts()
	for _, u := range []string{"alice", "bob"} {
		if err := acc.Add(ctx, u, domain, u+"-secret"); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob := newPhone(t, "alice"), newPhone(t, "bob")
	aor := sipvm.AOR("alice", domain)

	res, err := alice.register(r.sip(1).Addr(), "alice", "alice-secret", 600)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("alice registers through peer 1: got %v, %v, want 200", res, err)
	}
	if got := res.GetHeaders("Contact"); len(got) != 1 || !strings.Contains(got[0].Value(), "expires=") {
		t.Fatalf("200 OK lists contacts %v, want alice's one with its expiry", got)
	}
	for i := range r.peers {
		bs, err := r.sip(i).Lookup(ctx, aor)
		if err != nil || len(bs) != 1 {
			t.Fatalf("peer %d looks up alice: got %v, %v, want one binding at once", i, bs, err)
		}
	}

	t.Run("call through peer 4 reaches alice, both hang up", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		d, err := bob.call(cctx, r.sip(4).Addr(), "alice")
		if err != nil {
			t.Fatalf("invite: %v", err)
		}
		if err := d.WaitAnswer(cctx, sipgo.AnswerOptions{}); err != nil {
			t.Fatalf("wait answer: %v", err)
		}
		if got := d.InviteResponse.StatusCode; got != 200 {
			t.Fatalf("got %d, want 200", got)
		}
		if rr := d.InviteResponse.GetHeaders("Record-Route"); len(rr) == 0 {
			t.Fatalf("200 OK has no Record-Route: in-dialog requests would bypass the ring")
		}
		// The INVITE came from peer 4's SIP port, which a phone behind NAT
		// can be reached from, not from a socket of its own.
		alice.mu.Lock()
		src := alice.inCall.Source()
		alice.mu.Unlock()
		if src != r.sip(4).Addr() {
			t.Errorf("alice got the INVITE from %s, want peer 4's SIP address %s", src, r.sip(4).Addr())
		}
		if err := d.Ack(cctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
		waitChan(t, "alice to get the ACK", alice.ackIn)
		if err := d.Bye(cctx); err != nil {
			t.Fatalf("bye: %v", err)
		}
		waitChan(t, "alice to get the BYE", alice.byeIn)
		d.Close()
	})

	t.Run("busy contact goes to voicemail", func(t *testing.T) {
		alice.answer.Store(486)
		defer alice.answer.Store(0)
		got := callStatus(t, bob, r.sip(2).Addr(), "alice")
		if got.StatusCode != 486 || !strings.Contains(got.Reason, "voicemail") {
			t.Fatalf("got %d %q, want 486 with a reason naming voicemail", got.StatusCode, got.Reason)
		}
	})

	t.Run("unregistered user goes to voicemail", func(t *testing.T) {
		got := callStatus(t, alice, r.sip(3).Addr(), "bob")
		if got.StatusCode != 480 || !strings.Contains(got.Reason, "not registered") {
			t.Fatalf("got %d %q, want 480 not registered", got.StatusCode, got.Reason)
		}
	})

	t.Run("refused credentials", func(t *testing.T) {
		for _, tc := range []struct {
			name, user, password string
			want                 int
		}{
			{"wrong password", "alice", "guess", 403},
			{"alice registers bob", "alice", "alice-secret", 403},
			{"no such account", "mallory", "x", 403},
		} {
			to := "alice"
			if tc.name == "alice registers bob" {
				to = "bob"
			}
			res, err := alice.registerAs(r.sip(2).Addr(), to, tc.user, tc.password, 600)
			if err != nil || res.StatusCode != tc.want {
				t.Errorf("%s: got %v, %v, want %d", tc.name, res, err, tc.want)
			}
		}
	})

	t.Run("expires", func(t *testing.T) {
		res, err := alice.register(r.sip(1).Addr(), "alice", "alice-secret", 1)
		if err != nil || res.StatusCode != 423 {
			t.Fatalf("expires 1s: got %v, %v, want 423", res, err)
		}
		if h := res.GetHeader("Min-Expires"); h == nil || h.Value() != "2" {
			t.Fatalf("423 Min-Expires: got %v, want 2", h)
		}
		res, err = alice.register(r.sip(1).Addr(), "alice", "alice-secret", 600, sip.NewHeader("Contact", "<sip:alice@127.0.0.1:9>;expires=0"))
		if err != nil || res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 1 {
			t.Fatalf("an expires=0 contact: got %v, %v, want 200 listing alice's binding only", res, err)
		}
	})

	t.Run("re-register, unregister, expiry", func(t *testing.T) {
		res, err := alice.register(r.sip(2).Addr(), "alice", "alice-secret", 900)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("refresh: got %v, %v", res, err)
		}
		if bs, _ := r.sip(3).Lookup(ctx, aor); len(bs) != 1 {
			t.Fatalf("after refresh: got %d bindings, want 1", len(bs))
		}
		res, err = alice.register(r.sip(3).Addr(), "alice", "alice-secret", 0)
		if err != nil || res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 0 {
			t.Fatalf("unregister: got %v, %v, want 200 with no contact", res, err)
		}
		waitFor(t, "the binding to be gone everywhere", 10*time.Second, func() error {
			for i := range r.peers {
				if bs, _ := r.sip(i).Lookup(ctx, aor); len(bs) != 0 {
					return fmt.Errorf("peer %d still has %v", i, bs)
				}
			}
			return nil
		})
		res, err = alice.register(r.sip(0).Addr(), "alice", "alice-secret", 2)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("short registration: got %v, %v", res, err)
		}
		waitFor(t, "the 2s binding to expire", 10*time.Second, func() error {
			if bs, _ := r.sip(4).Lookup(ctx, aor); len(bs) != 0 {
				return fmt.Errorf("still bound: %v", bs)
			}
			return nil
		})
	})

	t.Run("the peer that took the REGISTER dies", func(t *testing.T) {
		res, err := alice.register(r.sip(1).Addr(), "alice", "alice-secret", 600)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("register: got %v, %v", res, err)
		}
		r.kill(1)
		waitFor(t, "the binding through the survivors", 20*time.Second, func() error {
			for _, i := range []int{0, 2, 3, 4} {
				bs, err := r.sip(i).Lookup(ctx, aor)
				if err != nil || len(bs) != 1 {
					return fmt.Errorf("peer %d: %v, %v", i, bs, err)
				}
			}
			return nil
		})
	})
}

func waitChan(t *testing.T, what string, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("waiting for %s: timed out", what)
	}
}

// callStatus places a call and returns its final response.
func callStatus(t *testing.T, ph *phone, server, callee string) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	d, err := ph.call(ctx, server, callee)
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	defer d.Close()
	err = d.WaitAnswer(ctx, sipgo.AnswerOptions{})
	if d.InviteResponse == nil {
		t.Fatalf("no final answer: %v", err)
	}
	return d.InviteResponse
}
