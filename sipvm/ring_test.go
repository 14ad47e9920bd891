package sipvm_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/dht/dhttest"
	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/ringpeer"
	"github.com/voicering/voicering/store/local"
	"github.com/voicering/voicering/store/peer"
	"github.com/voicering/voicering/store/ring"
)

const domain = "example.org"

// sipRing is a ring of whole peers (storage and SIP) in this process.
type sipRing struct {
	t     *testing.T
	base  string
	tune  func(*sipvm.Config)
	peers []*ringMember
}

type ringMember struct {
	p      *ringpeer.Peer
	cancel context.CancelFunc
	done   chan error
}

func newSIPRing(t *testing.T, n int, tune func(*sipvm.Config)) *sipRing {
	t.Helper()
	r := &sipRing{t: t, base: t.TempDir(), tune: tune}
	t.Cleanup(r.stopAll)
	for range n {
		r.add()
	}
	// Settled when a record written through one peer reads back through
	// every other.
	accounts := sipvm.NewAccounts(r.peers[0].p.Records())
	waitFor(t, "the ring to settle", 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		if err := accounts.Add(ctx, "probe", domain, "x"); err != nil {
			return err
		}
		for i, m := range r.peers {
			got, err := sipvm.NewAccounts(m.p.Records()).List(ctx, domain)
			if err != nil || len(got) == 0 {
				return fmt.Errorf("peer %d lists %v, %v", i, got, err)
			}
			if st := m.p.Node().Status(); len(st.Successors) < n-1 {
				return fmt.Errorf("peer %d knows %d successors", i, len(st.Successors))
			}
		}
		return nil
	})
	return r
}

// add starts one more peer, joining through the first live one, and
// returns its index.
func (r *sipRing) add() int {
	t := r.t
	t.Helper()
	i := len(r.peers)
	var boot []string
	for _, m := range r.peers {
		if m.p != nil {
			boot = []string{m.p.Self().Addr}
			break
		}
	}
	sc := &sipvm.Config{Domain: domain, Listen: "127.0.0.1:0", RingTimeout: 3 * time.Second, MinExpires: 2 * time.Second}
	if r.tune != nil {
		r.tune(sc)
	}
	p, err := ringpeer.New(ringpeer.Config{
		Peer: peer.Config{
			Dir: filepath.Join(r.base, fmt.Sprintf("peer-%d", i)), Listen: "127.0.0.1:0", Bootstrap: boot,
			Node: dhttest.Fast(), Store: local.Config{NoSync: true},
			Maintain: ring.MaintainConfig{Settle: 200 * time.Millisecond, Period: time.Second, Scrub: time.Second},
		},
		SIP: sc,
	})
	if err != nil {
		t.Fatalf("start peer %d: %v", i, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &ringMember{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- p.Run(ctx) }()
	r.peers = append(r.peers, m)
	return i
}

// kill stops peer i abruptly.
func (r *sipRing) kill(i int) {
	m := r.peers[i]
	if m.p == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		r.t.Errorf("peer %d Run: %v", i, err)
	}
	m.p.Close()
	m.p = nil
}

func (r *sipRing) stopAll() {
	for i := range r.peers {
		r.kill(i)
	}
}

func (r *sipRing) sip(i int) *sipvm.Server { return r.peers[i].p.SIP }

// waitFor polls cond until it returns nil, failing at the deadline.
func waitFor(t *testing.T, what string, deadline time.Duration, cond func() error) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// phone is a SIP user agent in the test process: it registers, answers
// calls (180 then 200, or a fixed failure) and places calls.
type phone struct {
	t      *testing.T
	user   string
	addr   string // HOST:PORT it listens on (UDP)
	ua     *sipgo.UserAgent
	client *sipgo.Client
	dialog *sipgo.DialogUA

	answer atomic.Int32 // final status it answers INVITEs with; 0: 200

	mu     sync.Mutex
	events []string // "invite", "ack", "bye", "cancel"
	byeIn  chan struct{}
	ackIn  chan struct{}
	inCall *sip.Request // the INVITE it answered
}

func newPhone(t *testing.T, user string) *phone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ph := &phone{t: t, user: user, addr: conn.LocalAddr().String(), ua: ua,
		byeIn: make(chan struct{}, 4), ackIn: make(chan struct{}, 4)}
	host, port, _ := net.SplitHostPort(ph.addr)
	p, _ := strconv.Atoi(port)
	if ph.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientPort(p)); err != nil {
		t.Fatal(err)
	}
	ph.dialog = &sipgo.DialogUA{Client: ph.client, ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host, Port: p}}}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		ph.note("invite")
		ph.mu.Lock()
		ph.inCall = req
		ph.mu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		if code := int(ph.answer.Load()); code != 0 {
			tx.Respond(sip.NewResponseFromRequest(req, code, "Nope", nil))
			return
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", []byte("v=0\r\n"))
		res.AppendHeader(sip.HeaderClone(&ph.dialog.ContactHDR))
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		tx.Respond(res)
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { ph.note("ack"); ph.ackIn <- struct{}{} })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		ph.note("bye")
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		ph.byeIn <- struct{}{}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeUDP(conn) }()
	t.Cleanup(func() { cancel(); conn.Close(); ua.Close(); <-done; _ = ctx })
	return ph
}

func (ph *phone) note(e string) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.events = append(ph.events, e)
}

// register sends REGISTER for user's AOR to the peer at server, answering
// a digest challenge with password, and returns the final response.
func (ph *phone) register(server, user, password string, expires int, extra ...sip.Header) (*sip.Response, error) {
	return ph.registerAs(server, user, user, password, expires, extra...)
}

// registerAs registers aorUser's address authenticating as user.
func (ph *phone) registerAs(server, aorUser, user, password string, expires int, extra ...sip.Header) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(ph.t.Context(), 10*time.Second)
	defer cancel()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	req.SetDestination(server)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: aorUser, Host: domain}}
	from := &sip.FromHeader{Address: to.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	if len(extra) == 0 {
		req.AppendHeader(sip.HeaderClone(&ph.dialog.ContactHDR))
	}
	for _, h := range extra {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	res, err := ph.client.Do(ctx, req)
	if err != nil || res.StatusCode != 401 {
		return res, err
	}
	req.SetDestination(server)
	return ph.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: password})
}

// call places a call to sip:callee@domain through the peer at server.
func (ph *phone) call(ctx context.Context, server, callee string) (*sipgo.DialogClientSession, error) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: callee, Host: domain})
	host, port, _ := net.SplitHostPort(server)
	p, _ := strconv.Atoi(port)
	req.AppendHeader(&sip.RouteHeader{Address: sip.Uri{Host: host, Port: p, UriParams: sip.HeaderParams{{K: "lr", V: ""}}}})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte("v=0\r\n"))
	return ph.dialog.WriteInvite(ctx, req)
}

type syncBuf struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
