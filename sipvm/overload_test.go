package sipvm

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/store"
)

// gatedRecords holds every binding write until release is closed, and
// says on entered when one arrives.
type gatedRecords struct {
	Records
	entered chan struct{}
	release chan struct{}
}

func (g *gatedRecords) Put(ctx context.Context, key store.Key, entries ...store.Entry) error {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Records.Put(ctx, key, entries...)
}

// lockedLog keeps what a logger writes, for a test to read while the
// server may still write.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveUntilCleanup runs s.Serve until the test ends, and checks that it
// returned nil. It returns once Serve is running.
func serveUntilCleanup(tb testing.TB, s *Server) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	// Serve is running once requests get a context.
	for {
		if _, ok := s.context(); ok {
			s.calls.Done()
			return
		}
		select {
		case <-time.After(time.Millisecond):
		case err := <-done:
			done <- err // for the cleanup
			tb.Fatalf("Serve returned at once: %v", err)
		}
	}
}

// Beyond MaxRegistrations in progress, a REGISTER is refused at once with
// 503 and a Retry-After, rather than queued; the ones admitted complete.
func TestRegistrationStormIsShed(t *testing.T) {
	rec := &memRecords{recs: map[store.Key]map[string]store.Entry{
		credentialsKey(AOR("alice", fuzzDomain)): {},
		credentialsKey(AOR("bob", fuzzDomain)):   {},
		usersKey(fuzzDomain):                     {},
	}}
	for _, u := range []string{"alice", "bob"} {
		if err := NewAccounts(rec).Add(t.Context(), u, fuzzDomain, "pw-"+u); err != nil {
			t.Fatal(err)
		}
	}
	gated := &gatedRecords{Records: rec, entered: make(chan struct{}, 4), release: make(chan struct{})}
	var logged lockedLog
	s, err := New(Config{Domain: fuzzDomain, Records: gated, Listen: "127.0.0.1:0", Algorithms: []string{"MD5"}, MaxRegistrations: 1, RecordTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, s)
	server := s.udp.LocalAddr().String()

	type result struct {
		res *sip.Response
		err error
	}
	first := make(chan result, 1)
	go func() {
		res, err := digestRegister(t, server, "alice")
		first <- result{res, err}
	}()
	select {
	case <-gated.entered: // alice holds the only slot, waiting on the ring
	case r := <-first:
		t.Fatalf("alice's REGISTER ended before reaching the ring: %v %v", r.res, r.err)
	}
	res, err := digestRegister(t, server, "bob")
	if err != nil {
		t.Fatalf("bob's REGISTER during alice's: %v", err)
	}
	if res.StatusCode != sip.StatusServiceUnavailable {
		t.Fatalf("bob's REGISTER with the only slot taken: %d %s, want 503", res.StatusCode, res.Reason)
	}
	ra := res.GetHeader("Retry-After")
	if ra == nil {
		t.Fatal("503 without Retry-After")
	}
	if n, err := strconv.Atoi(ra.Value()); err != nil || n < 1 || n > 10 {
		t.Errorf("Retry-After %q, want 1–10 seconds", ra.Value())
	}
	// It was refused before its challenge: while every slot is taken, a
	// REGISTER without credentials gets 503, not 401.
	res, err = register(t, server, "bob", false)
	if err != nil || res.StatusCode != sip.StatusServiceUnavailable {
		t.Fatalf("bob's REGISTER without credentials, the only slot taken: %v %v, want 503", res, err)
	}
	if got := s.Shed(); got != 2 {
		t.Errorf("Shed() = %d, want 2", got)
	}
	if !strings.Contains(logged.String(), "registration storm") || !strings.Contains(logged.String(), "refused=1") {
		t.Errorf("no log line says REGISTERs were refused; the log:\n%s", logged.String())
	}
	close(gated.release)
	if r := <-first; r.err != nil || r.res.StatusCode != sip.StatusOK {
		t.Fatalf("alice's REGISTER, admitted: %v %v, want 200", r.res, r.err)
	}
	// The slot is free again (alice's handler gives it back just after
	// her 200 is sent): bob gets in.
	for deadline := time.Now().Add(10 * time.Second); len(s.regSlots) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("alice's registration slot was not given back")
		}
	}
	if res, err := digestRegister(t, server, "bob"); err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("bob's REGISTER after alice's: %v %v, want 200", res, err)
	}
}

// digestRegister registers user@fuzzDomain (password "pw-"+user) at the
// UDP server, answering the digest challenge, and returns the final
// response.
func digestRegister(t *testing.T, server, user string) (*sip.Response, error) {
	t.Helper()
	return register(t, server, user, true)
}

// register sends user's REGISTER to server and, if digest is set,
// answers its challenge; it returns the final response.
func register(t *testing.T, server, user string, digest bool) (*sip.Response, error) {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: fuzzDomain})
	req.SetDestination(server)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: fuzzDomain}}
	from := &sip.FromHeader{Address: to.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "192.0.2.1", Port: 5060}})
	req.AppendHeader(sip.NewHeader("Expires", "600"))
	res, err := client.Do(ctx, req)
	if err != nil || res.StatusCode != sip.StatusUnauthorized || !digest {
		return res, err
	}
	req.SetDestination(server)
	return client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: "pw-" + user})
}
