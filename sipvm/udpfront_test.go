package sipvm

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/store"
)

// A REGISTER over UDP that comes again, as a phone resends it when no
// answer arrives, is one transaction (RFC 3261 §17.2.2): while the first
// is at the ring the copy is dropped, and afterwards it gets the same
// answer again, byte for byte, without touching the ring. Answering it
// afresh would refuse it: its nonce count was used.
func TestRegisterRetransmissionIsOneTransaction(t *testing.T) {
	rec := &memRecords{recs: map[store.Key]map[string]store.Entry{
		credentialsKey(AOR("alice", fuzzDomain)): {},
		usersKey(fuzzDomain):                     {},
		BindingsKey(AOR("alice", fuzzDomain)):    {},
	}}
	if err := NewAccounts(rec).Add(t.Context(), "alice", fuzzDomain, "secret"); err != nil {
		t.Fatal(err)
	}
	gated := &gatedRecords{Records: rec, entered: make(chan struct{}, 8), release: make(chan struct{})}
	s, err := New(Config{Domain: fuzzDomain, Records: gated, Listen: "127.0.0.1:0", Algorithms: []string{"MD5"},
		RecordTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, s)
	phone, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	server := s.udp.LocalAddr()
	send := func(b []byte) {
		t.Helper()
		if _, err := phone.WriteTo(b, server); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(what string) []byte {
		t.Helper()
		phone.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 65535)
		n, _, err := phone.ReadFrom(b)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return b[:n]
	}
	status := func(b []byte) int {
		t.Helper()
		m, err := sip.ParseMessage(b)
		if err != nil {
			t.Fatalf("answer does not parse: %v\n%s", err, b)
		}
		res, ok := m.(*sip.Response)
		if !ok {
			t.Fatalf("got a request, want an answer:\n%s", b)
		}
		return res.StatusCode
	}

	// rport: answers go to the socket sending, not to the Via's port.
	rport := func(b []byte) []byte { return bytes.Replace(b, []byte(";branch="), []byte(";rport;branch="), 1) }
	req := rport(authenticatedRegister(s, 1))
	send(req)
	<-gated.entered // the first is at the ring
	send(req)       // resent meanwhile
	for s.front.resent.Load() == 0 {
		time.Sleep(time.Millisecond) // until the copy is seen
	}
	close(gated.release)
	first := recv("the answer")
	if got := status(first); got != sip.StatusOK {
		t.Fatalf("REGISTER answered %d, want 200:\n%s", got, first)
	}
	send(req) // resent after the answer (as if that was lost)
	again := recv("the answer to the copy sent after it")
	if !bytes.Equal(first, again) {
		t.Errorf("the copy sent after the answer got another answer:\n%s\nwant the first again:\n%s", again, first)
	}
	phone.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := phone.ReadFrom(make([]byte, 65535)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a third answer came (%d bytes, %v): the copy sent while the first was at the ring was answered too", n, err)
	}
	if n := s.front.resent.Load(); n != 2 {
		t.Errorf("%d copies taken for copies, want 2", n)
	}
	if n := len(gated.entered); n != 0 {
		t.Errorf("the copies reached the ring %d more times, want none", n)
	}

	// A new transaction, with the next nonce count, is answered anew.
	send(rport(authenticatedRegister(s, 2)))
	if got := status(recv("the answer to a new REGISTER")); got != sip.StatusOK {
		t.Errorf("the next REGISTER answered %d, want 200", got)
	}
}

// Answers are kept between one and two ttl, and a full generation is
// dropped early.
func TestAnsweredGenerations(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	a := newAnswered(10*time.Second, 3)
	if _, seen := a.begin("k1", at(0)); seen {
		t.Fatal("k1 seen before it began")
	}
	if v, seen := a.begin("k1", at(1)); !seen || v != nil {
		t.Fatalf("k1 in progress: got %q %v, want nil, seen", v, seen)
	}
	a.finish("k1", []byte("answer 1"))
	if v, _ := a.begin("k1", at(5)); string(v) != "answer 1" {
		t.Fatalf("k1 at 5 s: %q, want its answer", v)
	}
	a.begin("k2", at(12)) // a new generation begins
	if v, _ := a.begin("k1", at(15)); string(v) != "answer 1" {
		t.Fatalf("k1 at 15 s: %q, want its answer still", v)
	}
	a.begin("k3", at(25)) // and another: k1's is dropped
	if _, seen := a.begin("k1", at(26)); seen {
		t.Fatal("k1 still kept after two generations")
	}
	a.forget("k1")
	if _, seen := a.begin("k1", at(27)); seen {
		t.Fatal("k1 kept after forget")
	}
	// k3, k1 and k4 fill the generation begun at 25 s: k5 starts a new
	// one, k2 (two back) is gone, k3 is still there.
	a.begin("k4", at(27))
	a.begin("k5", at(28))
	if _, seen := a.begin("k2", at(28)); seen {
		t.Error("k2 kept though two generations began after it")
	}
	if _, seen := a.begin("k3", at(28)); !seen {
		t.Error("k3 forgotten one generation after its own")
	}
}

// Answers go where RFC 3261 §18.2.2 and RFC 3581 say: the source address
// with the top Via's port, or the source port when the Via asks for rport.
func TestReplyAddr(t *testing.T) {
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	for _, c := range []struct{ via, want string }{
		{"SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1", "192.0.2.7:5070"},
		{"SIP/2.0/UDP 10.0.0.5:5070;rport;branch=z9hG4bK1", "192.0.2.7:40000"},
		{"SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1", "192.0.2.7:5060"},
	} {
		m, err := sip.ParseMessage([]byte("REGISTER sip:example.com SIP/2.0\r\nVia: " + c.via + "\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := replyAddr(src, m.(*sip.Request).Via()).String(); got != c.want {
			t.Errorf("Via %q: answer to %s, want %s", c.via, got, c.want)
		}
	}
}
