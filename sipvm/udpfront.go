package sipvm

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/sipvm/workers"
)

// udpFront stands between the UDP socket and sipgo. It takes REGISTER
// requests off the socket and has a pool of workers answer them, each
// as its own transaction kept in a table of answers (answered) rather
// than a sipgo transaction; everything else goes on to sipgo unchanged.
//
// Why: a REGISTER is the whole of a storm's load, and sipgo spends on
// each what the registrar does not need. It reads and parses every
// datagram in one goroutine, starts a goroutine per request, whose stack
// grows through the registrar and the ring, and keeps a transaction with
// its timers for 32 s after the answer. Here the parsing happens in the
// workers, in parallel, the workers' stacks are already grown, and the
// state kept after an answer is the answer's bytes, only for REGISTERs
// that carried credentials. Kamailio's registrar, the benchmark's anchor,
// answers REGISTER statelessly.
//
// Retransmissions (RFC 3261 §17.2.2): a REGISTER with credentials that
// comes again with the branch of one in progress is dropped; after the
// answer, it gets the same answer again, for 32–64 s (less on a peer
// answering over 3,000 such REGISTERs a second, when a generation fills
// early: a copy that misses is refused as a replayed nonce, 401 stale, and
// the phone authenticates anew). A REGISTER without credentials is
// answered afresh (a new 401 costs no ring I/O and changes nothing).
//
// REGISTERs over TCP and TLS still go through sipgo.
type udpFront struct {
	net.PacketConn // the socket: writes, addresses and Close pass through

	s        *Server
	handle   func(*sip.Request, sip.ServerTransaction) // the checked registrar
	parser   *sip.Parser
	work     *workers.Pool
	answered *answered
	resent   atomic.Uint64 // REGISTERs that came again: dropped or answered again
	// reading is set while sipgo reads the socket, which it has then
	// filed as the listener that fromListener names.
	reading atomic.Bool
}

func newUDPFront(s *Server, c net.PacketConn) *udpFront {
	return &udpFront{PacketConn: c, s: s, handle: s.checked(s.onRegister), parser: sip.NewParser(),
		work: workers.New(10 * time.Second), answered: newAnswered(64*sip.T1, maxAnswered)}
}

// maxAnswered bounds each generation of the table of answers: past it, a
// generation is dropped early (about 50 MiB of answers each).
const maxAnswered = 100_000

// ReadFrom is sipgo's read: it returns the next datagram that is not a
// REGISTER, and hands REGISTERs to the workers on the way.
func (f *udpFront) ReadFrom(p []byte) (int, net.Addr, error) {
	f.reading.Store(true)
	for {
		n, addr, err := f.PacketConn.ReadFrom(p)
		if err != nil {
			f.reading.Store(false) // sipgo stops reading and drops the listener
			return n, addr, err
		}
		if !bytes.HasPrefix(p[:n], []byte("REGISTER ")) {
			return n, addr, nil
		}
		b := bytes.Clone(p[:n])
		if !f.work.Do(func() { f.register(b, addr) }) {
			return n, addr, nil // stopping: sipgo answers it
		}
	}
}

// stop ends the workers once their requests are answered. ReadFrom hands
// REGISTERs to sipgo from then on.
func (f *udpFront) stop() { f.work.Stop() }

// register answers one REGISTER datagram b from addr.
func (f *udpFront) register(b []byte, addr net.Addr) {
	raw, scanned := scanRegister(b)
	src, _ := addr.(*net.UDPAddr)
	if scanned && src != nil && !raw.auth && f.challenge(&raw, src) {
		return
	}
	msg, err := f.parser.ParseSIP(b)
	if err != nil {
		f.s.log.Debug("sip: unparsable REGISTER dropped", "from", addr.String(), "err", err)
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return
	}
	req.SetTransport("UDP")
	req.SetSource(addr.String())
	tx := &udpTx{f: f, addr: addr}
	via := req.Via()
	if via != nil {
		tx.addr = replyAddr(addr, via)
	}
	if scanned && src != nil {
		tx.raw, tx.src = &raw, src
	}
	if via == nil || req.CallID() == nil || req.CSeq() == nil {
		f.s.respond(req, tx, sip.StatusBadRequest, "Bad Request (missing Via, Call-ID or CSeq)")
		return
	}
	if req.GetHeader("Authorization") != nil {
		tx.key = answerKey(req, via)
		old, seen := f.answered.begin(tx.key, time.Now())
		if seen {
			f.resent.Add(1)
		}
		switch {
		case seen && old != nil: // answered before: the same answer
			if _, err := f.WriteTo(old, tx.addr); err != nil {
				f.s.log.Debug("sip: repeat answer to REGISTER", "err", err)
			}
			return
		case seen: // in progress
			return
		}
		defer func() {
			if !tx.final {
				f.answered.forget(tx.key)
			}
		}()
	}
	f.handle(req, tx)
}

// challenge answers a REGISTER without credentials 401 from its bytes,
// when it is plain and for our domain and the registrar would challenge
// it: otherwise it returns false and the registrar answers.
func (f *udpFront) challenge(r *rawRegister, src *net.UDPAddr) bool {
	s := f.s
	if !bytes.EqualFold(r.toHost, []byte(s.cfg.Domain)) {
		return false
	}
	if _, ok := s.context(); !ok {
		return false
	}
	defer s.calls.Done()
	if s.regSlots != nil && len(s.regSlots) == cap(s.regSlots) {
		return false // refused: see onRegister
	}
	tx := udpTx{f: f, addr: r.replyAddr(src), raw: r, src: src}
	if err := tx.respondRaw(sip.StatusUnauthorized, "Unauthorized", s.nonces.challenges(s.cfg.Domain, false)...); err != nil {
		s.log.Debug("sip: respond 401", "err", err)
	}
	return true
}

// answerKey names req's transaction (RFC 3261 §17.2.3): the branch and
// sent-by of its top Via. A branch without RFC 3261's magic cookie is a
// pre-3261 client's, made unique with Call-ID and CSeq.
func answerKey(req *sip.Request, via *sip.ViaHeader) string {
	branch, _ := via.Params.Get("branch")
	k := branch + "|" + via.Host + ":" + strconv.Itoa(via.Port)
	if len(branch) < 7 || branch[:7] != sip.RFC3261BranchMagicCookie {
		k += "|" + string(*req.CallID()) + "|" + req.CSeq().Value()
	}
	return k
}

// replyAddr is where the answer to a request over UDP from src goes (RFC
// 3261 §18.2.2, RFC 3581), as sipgo sends it: the source address with the
// port of the top Via, or the source port when the Via asks for rport.
func replyAddr(src net.Addr, via *sip.ViaHeader) net.Addr {
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return src
	}
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		return src
	}
	port := via.Port
	if port == 0 {
		port = sip.DefaultUdpPort
	}
	return &net.UDPAddr{IP: ua.IP, Port: port, Zone: ua.Zone}
}

// udpTx is the transaction of a REGISTER taken by udpFront: its answer is
// sent to addr (replyAddr), and a final answer to a REGISTER with
// credentials is kept for its retransmissions. A second final answer is
// refused.
type udpTx struct {
	f     *udpFront
	addr  net.Addr
	key   string // in f.answered; "" for none
	final bool
	// raw is the request scanned, for answers built from its bytes
	// (respondRaw), and src where it came from; nil when it did not scan.
	raw *rawRegister
	src *net.UDPAddr
}

var _ sip.ServerTransaction = (*udpTx)(nil)

// errAnswered refuses a response after the final one.
var errAnswered = errors.New("sipvm: the REGISTER was answered already")

var sipBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Respond sends res to where the request came from.
func (t *udpTx) Respond(res *sip.Response) error {
	if t.final {
		return errAnswered
	}
	buf := sipBufs.Get().(*bytes.Buffer)
	defer sipBufs.Put(buf)
	buf.Reset()
	res.StringWrite(buf)
	return t.send(buf.Bytes(), res.StatusCode)
}

// respondRaw sends the answer code reason with the header lines extra
// ("Name: value"), built from the request's bytes. t.raw is set.
func (t *udpTx) respondRaw(code int, reason string, extra ...string) error {
	if t.final {
		return errAnswered
	}
	bp := rawBufs.Get().(*[]byte)
	defer rawBufs.Put(bp)
	*bp = t.raw.appendAnswer((*bp)[:0], code, reason, t.src, extra...)
	return t.send(*bp, code)
}

// send sends the answer b, with status code, and keeps a final one for
// the retransmissions of a REGISTER with credentials.
func (t *udpTx) send(b []byte, code int) error {
	if len(b) > sip.UDPMTUSize-200 {
		return sip.ErrUDPMTUCongestion
	}
	if code >= 200 {
		t.final = true
		if t.key != "" {
			t.f.answered.finish(t.key, bytes.Clone(b))
		}
	}
	_, err := t.f.WriteTo(b, t.addr)
	return err
}

// The rest of sip.ServerTransaction: a REGISTER has no ACK or CANCEL,
// and its transaction ends with its answer.
func (t *udpTx) Acks() <-chan *sip.Request          { return nil }
func (t *udpTx) OnCancel(sip.FnTxCancel) bool       { return false }
func (t *udpTx) Terminate()                         {}
func (t *udpTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *udpTx) Err() error                         { return nil }
func (t *udpTx) Done() <-chan struct{}              { return closedChan }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// answered keeps the final answers to REGISTERs with credentials, and
// marks the ones in progress (a nil answer), for between ttl and twice
// ttl: two generations of a map, the older dropped as a whole each ttl,
// or when the newer holds max.
type answered struct {
	ttl time.Duration
	max int

	mu        sync.Mutex
	cur, prev map[string][]byte
	since     time.Time // when cur began
}

func newAnswered(ttl time.Duration, max int) *answered {
	return &answered{ttl: ttl, max: max, cur: map[string][]byte{}, prev: map[string][]byte{}}
}

// begin returns the answer kept for key, or seen true and a nil answer
// when it is in progress, or marks it in progress and returns seen false.
func (a *answered) begin(key string, now time.Time) (answer []byte, seen bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if v, ok := a.cur[key]; ok {
		return v, true
	}
	if v, ok := a.prev[key]; ok {
		return v, true
	}
	if now.Sub(a.since) >= a.ttl || len(a.cur) >= a.max {
		a.prev, a.cur, a.since = a.cur, make(map[string][]byte, len(a.cur)), now
	}
	a.cur[key] = nil
	return nil, false
}

// finish keeps answer for key.
func (a *answered) finish(key string, answer []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.prev[key]; ok {
		a.prev[key] = answer
		return
	}
	a.cur[key] = answer
}

// forget drops key, in progress but left unanswered.
func (a *answered) forget(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.cur, key)
	delete(a.prev, key)
}

// fromListener is a sipgo request option: a request over UDP leaves from
// the SIP port itself, where phones registered from and send to, so that
// their NAT bindings and firewalls let it in, rather than from a new
// socket. (sipgo picks the listener only for addresses it has read a
// datagram from, and udpFront keeps REGISTERs from it.)
func (s *Server) fromListener(_ *sipgo.Client, req *sip.Request) error {
	// Only while sipgo has the socket filed: else it would bind the SIP
	// port anew (before Serve reads, or once it has stopped).
	if req.Laddr.IP != nil || !strings.EqualFold(req.Transport(), "UDP") || !s.front.reading.Load() {
		return nil
	}
	if a, ok := s.udp.LocalAddr().(*net.UDPAddr); ok {
		req.Laddr = sip.Addr{IP: a.IP, Port: a.Port}
	}
	return nil
}
