package sipvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/voicering/voicering/store"
)

// memRecords is an in-memory Records for the fuzzers. It keeps only the
// records it was seeded with and accepts (and forgets) every other
// write, so a fuzzed REGISTER never leaves a binding that a later fuzzed
// INVITE would fork to (and send packets to wherever it names).
type memRecords struct {
	mu   sync.Mutex
	recs map[store.Key]map[string]store.Entry
}

var _ Records = (*memRecords)(nil)

func (m *memRecords) Get(_ context.Context, key store.Key) ([]store.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Entry
	for _, e := range m.recs[key] {
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("memRecords: %w", store.ErrNotFound)
	}
	return out, nil
}

func (m *memRecords) Put(_ context.Context, key store.Key, entries ...store.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.recs[key]; ok {
		for _, e := range entries {
			r[e.Name] = e
		}
	}
	return nil
}

func (m *memRecords) Delete(context.Context, store.Key, ...string) error { return nil }

// fuzzDomain is the domain of the fuzzed server: RFC 4475's messages are
// mostly addressed to example.com, so the seeds reach the handlers.
const fuzzDomain = "example.com"

// newFuzzServer returns a serving Server on loopback whose ring is a
// memRecords holding the account alice (password "secret"). It
// advertises a documentation address nothing routes to, so a fuzzed
// Route rarely names it (which would make it proxy in-dialog).
func newFuzzServer(tb testing.TB) *Server {
	tb.Helper()
	rec := &memRecords{recs: map[store.Key]map[string]store.Entry{
		credentialsKey(AOR("alice", fuzzDomain)): {},
		usersKey(fuzzDomain):                     {},
	}}
	if err := NewAccounts(rec).Add(tb.Context(), "alice", fuzzDomain, "secret"); err != nil {
		tb.Fatal(err)
	}
	s, err := New(Config{
		Domain: fuzzDomain, Records: rec, Listen: "127.0.0.1:0", Advertise: "198.51.100.77:5999",
		Algorithms: []string{"MD5", "SHA-256"}, NonceSecret: []byte("fuzz"),
		CacheTTL: time.Nanosecond, RecordTimeout: 100 * time.Millisecond, RingTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	serveUntilCleanup(tb, s)
	return s
}

// txRecorder is a sip.ServerTransaction that keeps the responses given.
type txRecorder struct {
	mu    sync.Mutex
	codes []int
	done  chan struct{}
}

var _ sip.ServerTransaction = (*txRecorder)(nil)

func newTxRecorder() *txRecorder { return &txRecorder{done: make(chan struct{})} }

func (r *txRecorder) Respond(res *sip.Response) error {
	_ = res.String() // what the transport would do: render it
	r.mu.Lock()
	defer r.mu.Unlock()
	r.codes = append(r.codes, res.StatusCode)
	return nil
}
func (r *txRecorder) Acks() <-chan *sip.Request          { return nil }
func (r *txRecorder) OnCancel(sip.FnTxCancel) bool       { return true }
func (r *txRecorder) Terminate()                         {}
func (r *txRecorder) OnTerminate(sip.FnTxTerminate) bool { return true }
func (r *txRecorder) Done() <-chan struct{}              { return r.done }
func (r *txRecorder) Err() error                         { return nil }

// dispatchedMethods are the methods build registers a handler for; every
// other goes to onOther. TestFuzzDispatch keeps this in step with build.
var dispatchedMethods = []string{"REGISTER", "OPTIONS", "INVITE", "ACK", "CANCEL", "BYE", "SUBSCRIBE"}

// dispatch hands req to the handler build registers for its method, as
// sipgo's server does once its transaction layer accepted the request
// (which it does only with a Via and a CSeq).
func (s *Server) dispatch(req *sip.Request, tx sip.ServerTransaction) {
	if req.Via() == nil || req.CSeq() == nil {
		return
	}
	switch req.Method {
	case sip.REGISTER:
		s.onRegister(req, tx)
	case sip.OPTIONS:
		s.onOptions(req, tx)
	case sip.INVITE:
		s.onInvite(req, tx)
	case sip.ACK:
		s.onAck(req, tx)
	case sip.CANCEL:
		s.onStrayCancel(req, tx)
	case sip.BYE:
		s.onBye(req, tx)
	case sip.SUBSCRIBE:
		s.onSubscribe(req, tx)
	default:
		s.onOther(req, tx)
	}
}

func TestFuzzDispatch(t *testing.T) {
	s := newFuzzServer(t)
	got := s.srv.RegisteredMethods()
	slices.Sort(got)
	want := slices.Clone(dispatchedMethods)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("build registers handlers for %v, the fuzzers dispatch %v: update dispatch in fuzz_test.go", got, want)
	}
}

// tortureSeeds adds RFC 4475's messages to f's corpus.
func tortureSeeds(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "sip", "rfc4475", "*.dat"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no torture messages in testdata/sip/rfc4475: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// authenticatedRegister returns a REGISTER for alice that s accepts: its
// digest answers a nonce s issued.
func authenticatedRegister(s *Server, nc int) []byte {
	nonce := s.nonces.issue()
	uri := "sip:" + fuzzDomain
	cnonce := "0a4f113b"
	ha1 := HA1("MD5", "alice", fuzzDomain, "secret")
	ha2 := hexHash(newHash("MD5"), "REGISTER:"+uri)
	resp := hexHash(newHash("MD5"), fmt.Sprintf("%s:%s:%08x:%s:auth:%s", ha1, nonce, nc, cnonce, ha2))
	return fmt.Appendf(nil, "REGISTER %s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds%d\r\n"+
		"Max-Forwards: 70\r\n"+
		"To: <sip:alice@%s>\r\n"+
		"From: <sip:alice@%s>;tag=1928301774\r\n"+
		"Call-ID: a84b4c76e66710@pc33.example.com\r\n"+
		"CSeq: %d REGISTER\r\n"+
		"Contact: <sip:alice@127.0.0.1:5070>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"\r\n"+
		"Authorization: Digest username=\"alice\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5, cnonce=\"%s\", qop=auth, nc=%08x\r\n"+
		"Expires: 3600\r\n"+
		"Content-Length: 0\r\n\r\n",
		uri, nc, fuzzDomain, fuzzDomain, nc, fuzzDomain, nonce, uri, resp, cnonce, nc)
}

// FuzzHandleRequest parses arbitrary bytes as a SIP message with sipgo's
// parser, as the transport does, and hands a request to the handler the
// server routes it to. Nothing may panic, and every request the handlers
// take gets at most one final answer.
func FuzzHandleRequest(f *testing.F) {
	tortureSeeds(f)
	s := newFuzzServer(f)
	f.Add(authenticatedRegister(s, 1))
	f.Add(authenticatedRegister(s, 2))
	f.Add([]byte("OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:example.com>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parser.ParseSIP(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:5070")
		tx := newTxRecorder()
		s.dispatch(req, tx)
		finals := 0
		for _, c := range tx.codes {
			if c >= 200 {
				finals++
			}
		}
		if finals > 1 {
			t.Errorf("%s answered %v: more than one final answer", req.StartLine(), tx.codes)
		}
	})
}

// FuzzAuthorization feeds arbitrary Authorization values to the digest
// checks: parsing, then verifying against alice's credentials. A value
// must never panic, and only a response computed from the password may
// pass.
func FuzzAuthorization(f *testing.F) {
	n := newNonces([]byte("fuzz"), 5*time.Minute, []string{"MD5", "SHA-256"}, time.Now)
	nonce := n.issue()
	f.Add(`Digest username="alice", realm="example.com", nonce="` + nonce + `", uri="sip:example.com", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001`)
	f.Add(`Digest username="alice", realm="example.com", nonce="` + nonce + `", uri="sip:example.com", response="00", algorithm=SHA-256, cnonce="x", qop=auth, nc=ffffffff`)
	f.Add(`Digest username="alice", realm="example.com", nonce="AAAA", uri="sip:example.com", response="", qop=auth-int, nc=0`)
	f.Add(`Digest realm="example.com"`)
	f.Add(`NoOneKnowsThisScheme opaque-data=here`) // badaspec
	f.Add(`Digest username="user", realm="example.com", nonce="1", uri="sip:example.com", response="0", nc=-1`)
	f.Add(`Digest username=`)
	f.Add(`Digest ,,,,=,=""`)
	cr := Credentials{MD5: HA1("MD5", "alice", fuzzDomain, "secret"), SHA256: HA1("SHA-256", "alice", fuzzDomain, "secret")}
	f.Fuzz(func(t *testing.T, value string) {
		c, err := n.parseAuthorization(value, fuzzDomain)
		if err != nil {
			if !errors.Is(err, errNoCredentials) && !errors.Is(err, errBadDigest) {
				t.Fatalf("parseAuthorization(%q): %v, want errNoCredentials or errBadDigest", value, err)
			}
			return
		}
		err = n.verify(c, "REGISTER", cr)
		if err == nil && !correctResponse(c, cr) {
			t.Fatalf("verify accepted %q", value)
		}
	})
}

// correctResponse computes c's digest response from cr independently of
// verify.
func correctResponse(c *digest.Credentials, cr Credentials) bool {
	algo, ha1 := "MD5", cr.MD5
	if strings.EqualFold(c.Algorithm, "SHA-256") {
		algo, ha1 = "SHA-256", cr.SHA256
	}
	ha2 := hexHash(newHash(algo), "REGISTER:"+c.URI)
	want := hexHash(newHash(algo), fmt.Sprintf("%s:%s:%08x:%s:%s:%s", ha1, c.Nonce, c.Nc, c.Cnonce, c.QOP, ha2))
	return want == strings.ToLower(c.Response)
}

// FuzzNonce feeds arbitrary nonces and counts to the nonce check: only
// nonces this peer issued may pass, each count once.
func FuzzNonce(f *testing.F) {
	n := newNonces([]byte("fuzz"), 5*time.Minute, []string{"MD5"}, time.Now)
	other := newNonces([]byte("other"), 5*time.Minute, []string{"MD5"}, time.Now)
	f.Add(n.issue(), uint32(1))
	f.Add(other.issue(), uint32(1))
	f.Add("", uint32(0))
	f.Add("not base64!", uint32(7))
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, nonce string, nc uint32) {
		err := n.check(nonce, nc)
		if err != nil {
			if !errors.Is(err, errStale) {
				t.Fatalf("check(%q, %d): %v, want errStale", nonce, nc, err)
			}
			return
		}
		if other.check(nonce, nc+1) == nil {
			t.Fatalf("nonce %q passed two peers' checks", nonce)
		}
		if err := n.check(nonce, nc); err == nil {
			t.Fatalf("check(%q, %d) passed twice: a replay", nonce, nc)
		}
	})
}

// FuzzDecodeBinding feeds arbitrary record values to the binding decoder.
// A decoded binding always has a contact, and encodes back to a value
// that decodes to it.
func FuzzDecodeBinding(f *testing.F) {
	f.Add([]byte(`{"contact":"sip:alice@127.0.0.1:5070","params":"+sip.instance=\"<urn:uuid:1>\"","source":"127.0.0.1:5070","transport":"UDP","callid":"x","cseq":2}`))
	f.Add([]byte(`{"contact":""}`))
	f.Add([]byte(`{"cseq":-1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"contact":"sip:a@b","cseq":99999999999}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		exp := time.Unix(1_800_000_000, 0)
		b, ok := decodeBinding(store.Entry{Name: "uri:x", Value: v, Expires: exp})
		if !ok {
			return
		}
		if b.Contact == "" || b.Name != "uri:x" || !b.Expires.Equal(exp) {
			t.Fatalf("decodeBinding(%q) = %+v", v, b)
		}
		again, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		b2, ok := decodeBinding(store.Entry{Name: "uri:x", Value: again, Expires: exp})
		if !ok || b2 != b {
			t.Fatalf("binding %+v encodes to %s, which decodes to %+v, %v", b, again, b2, ok)
		}
	})
}
