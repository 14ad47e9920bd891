package sipvm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Config configures a Server.
type Config struct {
	// Domain is the SIP domain served, e.g. "example.org": the host part
	// of its users' addresses and the digest realm. Required.
	Domain string
	// Records holds accounts and bindings (a peer's *ring.Records).
	// Required.
	Records Records
	// Listen is the HOST:PORT served over UDP and TCP alike, e.g.
	// "127.0.0.1:5060"; port 0 picks a free port for both. Zero:
	// "127.0.0.1:5060".
	Listen string
	// Advertise is the HOST:PORT other SIP parties reach this peer at,
	// put in Via and Record-Route. Zero: the listening address (which
	// must then not be a wildcard).
	Advertise string
	// TLS, when set, also serves SIP over TLS at TLSListen.
	// Nil: no TLS.
	TLS *tls.Config
	// TLSListen is the HOST:PORT for TLS. Zero: Listen's host, its port
	// plus one (5061 beside 5060).
	TLSListen string
	// Voicemail takes the calls no contact answered. Nil: NoVoicemail,
	// unless VM is set.
	Voicemail Voicemail
	// VM, when set, turns on the voicemail service of this peer (deposit,
	// retrieval at sip:voicemail@DOMAIN, MWI) and takes the place of
	// Voicemail. Nil: no voicemail service.
	VM *VoicemailConfig
	// RingTimeout is how long an INVITE rings the contacts before it goes
	// to voicemail. Zero: 20s.
	RingTimeout time.Duration
	// MinExpires and MaxExpires bound a binding's lifetime: a shorter
	// one is refused with 423 Interval Too Brief, a longer one cut to
	// MaxExpires. Zero: 60s and 1h. DefaultExpires is the lifetime when
	// the REGISTER gives none. Zero: 1h.
	MinExpires, MaxExpires, DefaultExpires time.Duration
	// Algorithms are the digest algorithms offered, in order of
	// preference ("SHA-256", "MD5"). Some UAs (sipp 3.6, old phones)
	// answer only the first challenge and know only MD5: list MD5 first
	// for them. Zero: SHA-256 then MD5, as RFC 8760 recommends.
	Algorithms []string
	// NonceTTL is how long a digest nonce is accepted. Zero: 5 min.
	NonceTTL time.Duration
	// NonceSecret keys the nonces' HMAC; peers sharing it accept each
	// other's nonces. Nil: a random secret, so nonces are per peer.
	NonceSecret []byte
	// CacheTTL is how long read bindings and credentials are reused
	// before being read from the ring again; a write through this peer
	// refreshes its cache at once. Zero: 2s.
	CacheTTL time.Duration
	// RecordTimeout bounds each ring read or write of a request.
	// Zero: 3s.
	RecordTimeout time.Duration
	// MaxRegistrations is how many authenticated REGISTERs this peer
	// works on at once. Beyond it a REGISTER is answered 503 at once,
	// with a random Retry-After of 1–10 s, instead of joining the queue:
	// under a registration storm (every phone re-registering after an
	// outage) the peer keeps serving at capacity rather than slowing
	// every request until all time out. While all are taken, a REGISTER
	// without credentials is refused too, rather than challenged: its
	// second leg would find no slot, so the peer spends what it has on the
	// registrations under way. Zero: DefaultMaxRegistrations; negative: no
	// limit.
	MaxRegistrations int
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Logger receives the server's events. Nil: discarded.
	Logger *slog.Logger
}

// Server is the SIP registrar and proxy of one peer. New binds its
// sockets; Serve answers on them until its context ends.
type Server struct {
	cfg      Config
	log      *slog.Logger
	accounts *Accounts
	nonces   *nonces
	cache    *cache
	vm       *voicemail    // nil: no voicemail service
	regSlots chan struct{} // one per REGISTER in progress; nil: no limit
	shed     atomic.Uint64 // REGISTERs answered 503 for want of a slot
	// shedLogged is when logShed last logged (Unix ns); shedAtLog the
	// count then.
	shedLogged atomic.Int64
	shedAtLog  atomic.Uint64

	advHost string
	advPort int

	udp   net.PacketConn
	front *udpFront // takes the REGISTERs off udp
	tcp   net.Listener
	tlsL  net.Listener

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client

	closeOnce sync.Once
	mu        sync.Mutex
	calls     sync.WaitGroup  // proxied requests in flight, joined by Serve
	callCtx   context.Context // ends when Serve ends
	stop      context.CancelFunc
}

// DefaultMaxRegistrations is Config.MaxRegistrations when zero: at the
// ~1,000 REGISTERs/s one peer serves on a small machine, 256 in progress
// is a quarter second of queue before it sheds. (128, the limit when a
// peer served half that, shed 0.2–2.4 % of a steady 4,000/s on a 4-peer
// ring; 256 shed at most 0.01 %.)
const DefaultMaxRegistrations = 256

// ErrConfig marks a Config that cannot be served.
var ErrConfig = errors.New("sipvm: bad configuration")

// ErrBusy marks work refused for want of capacity; ErrNotServing work
// asked of a Server before or after Serve.
var (
	ErrBusy       = errors.New("sipvm: busy")
	ErrNotServing = errors.New("sipvm: not serving")
)

// New checks cfg, fills its defaults and binds the sockets. Errors name
// the address at fault (one in use, a wildcard without Advertise).
func New(cfg Config) (*Server, error) {
	if err := CheckName("domain", cfg.Domain); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cfg.Domain = strings.ToLower(cfg.Domain)
	if cfg.Records == nil {
		return nil, fmt.Errorf("%w: no Records", ErrConfig)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:5060"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.RingTimeout, 20*time.Second)
	def(&cfg.MinExpires, 60*time.Second)
	def(&cfg.MaxExpires, time.Hour)
	def(&cfg.DefaultExpires, time.Hour)
	def(&cfg.NonceTTL, 5*time.Minute)
	def(&cfg.CacheTTL, 2*time.Second)
	def(&cfg.RecordTimeout, 3*time.Second)
	if cfg.MaxRegistrations == 0 {
		cfg.MaxRegistrations = DefaultMaxRegistrations
	}
	if cfg.MinExpires > cfg.MaxExpires {
		return nil, fmt.Errorf("%w: MinExpires %s above MaxExpires %s", ErrConfig, cfg.MinExpires, cfg.MaxExpires)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"SHA-256", "MD5"}
	}
	for i, a := range cfg.Algorithms {
		switch a = strings.ToUpper(a); a {
		case "SHA-256", "MD5":
			cfg.Algorithms[i] = a
		default:
			return nil, fmt.Errorf("%w: digest algorithm %q: offer SHA-256 or MD5", ErrConfig, a)
		}
	}
	if cfg.Voicemail == nil {
		cfg.Voicemail = NoVoicemail{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, accounts: NewAccounts(cfg.Records),
		nonces: newNonces(cfg.NonceSecret, cfg.NonceTTL, cfg.Algorithms, cfg.Now),
		cache:  newCache(cfg.CacheTTL, cfg.Now),
	}
	if cfg.MaxRegistrations > 0 {
		s.regSlots = make(chan struct{}, cfg.MaxRegistrations)
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	if err := s.build(); err != nil {
		s.closeSockets()
		return nil, err
	}
	if cfg.VM != nil {
		vm, err := newVoicemail(s, *cfg.VM)
		if err != nil {
			s.Close()
			return nil, err
		}
		vm.dialogs = sipgo.NewDialogServerCache(s.client, sip.ContactHeader{
			Address: sip.Uri{Scheme: "sip", Host: s.advHost, Port: s.advPort}})
		s.vm, s.cfg.Voicemail = vm, vm
	}
	return s, nil
}

// listen binds TCP and UDP on the same port, and TLS when configured.
func (s *Server) listen() error {
	host, port, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("%w: SIP listen address %q: %v", ErrConfig, s.cfg.Listen, err)
	}
	for try := 0; ; try++ {
		s.tcp, err = net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("sipvm: listen for SIP on tcp %s: %w (is another SIP server running? pick another --sip port)", s.cfg.Listen, err)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(s.tcp.Addr().(*net.TCPAddr).Port))
		s.udp, err = net.ListenPacket("udp", addr)
		if err == nil {
			break
		}
		s.tcp.Close()
		if port != "0" || try == 20 {
			return fmt.Errorf("sipvm: listen for SIP on udp %s: %w (is another SIP server running? pick another --sip port)", addr, err)
		}
	}
	bound := s.tcp.Addr().(*net.TCPAddr)
	adv := s.cfg.Advertise
	if adv == "" {
		if bound.IP.IsUnspecified() {
			s.closeSockets()
			return fmt.Errorf("%w: SIP listens on the wildcard %s; say which address phones reach it at (--sip-advertise HOST:PORT)", ErrConfig, s.cfg.Listen)
		}
		adv = bound.String()
	}
	h, p, err := net.SplitHostPort(adv)
	if err == nil {
		s.advPort, err = strconv.Atoi(p)
	}
	if err != nil {
		s.closeSockets()
		return fmt.Errorf("%w: SIP advertise address %q: want HOST:PORT", ErrConfig, adv)
	}
	s.advHost = h
	if s.cfg.TLS != nil {
		tl := s.cfg.TLSListen
		if tl == "" {
			tl = net.JoinHostPort(host, strconv.Itoa(bound.Port+1))
		}
		if s.tlsL, err = tls.Listen("tcp", tl, s.cfg.TLS); err != nil {
			s.closeSockets()
			return fmt.Errorf("sipvm: listen for SIP over TLS on %s: %w", tl, err)
		}
	}
	return nil
}

func (s *Server) closeSockets() {
	var cs []interface{ Close() error }
	if s.udp != nil {
		cs = append(cs, s.udp)
	}
	if s.tcp != nil {
		cs = append(cs, s.tcp)
	}
	if s.tlsL != nil {
		cs = append(cs, s.tlsL)
	}
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// build makes the sipgo user agent, server and client and routes methods.
func (s *Server) build() error {
	log := s.log.With("part", "sipgo")
	opts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent("voicering"),
		sipgo.WithUserAgentHostname(s.advHost),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(s.onStrayResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, sipgo.WithUserAgenTLSConfig(s.cfg.TLS))
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		return fmt.Errorf("sipvm: %w", err)
	}
	s.ua = ua
	if s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(log)); err != nil {
		ua.Close()
		return fmt.Errorf("sipvm: %w", err)
	}
	if s.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(s.advHost), sipgo.WithClientLogger(log)); err != nil {
		ua.Close()
		return fmt.Errorf("sipvm: %w", err)
	}
	s.front = newUDPFront(s, s.udp)
	s.srv.OnRegister(s.checked(s.onRegister))
	s.srv.OnOptions(s.checked(s.onOptions))
	s.srv.OnInvite(s.checked(s.onInvite))
	s.srv.OnAck(s.checked(s.onAck))
	s.srv.OnCancel(s.checked(s.onStrayCancel))
	s.srv.OnBye(s.checked(s.onBye))
	s.srv.OnSubscribe(s.checked(s.onSubscribe))
	s.srv.OnNoRoute(s.checked(s.onOther))
	return nil
}

// Close closes the sockets, ending Serve; a Server that never served
// must be closed to free them. Close may be called more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeSockets()
		if s.ua != nil {
			s.ua.Close()
		}
	})
	return nil
}

// Addr returns the address SIP is served at (UDP and TCP).
func (s *Server) Addr() string { return s.tcp.Addr().String() }

// Advertised returns the HOST:PORT put in Via and Record-Route.
func (s *Server) Advertised() string { return net.JoinHostPort(s.advHost, strconv.Itoa(s.advPort)) }

// Domain returns the domain served.
func (s *Server) Domain() string { return s.cfg.Domain }

// Accounts returns the accounts of the ring this server reads.
func (s *Server) Accounts() *Accounts { return s.accounts }

// Serve answers SIP until ctx ends, then closes the sockets, waits for
// the calls in flight to end and returns nil. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	cctx, stop := context.WithCancel(ctx)
	s.mu.Lock()
	s.callCtx, s.stop = cctx, stop
	s.mu.Unlock()
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	serve := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && cctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				errs <- err
			}
		})
	}
	serve(func() error { return s.srv.ServeUDP(s.front) })
	serve(func() error { return s.srv.ServeTCP(s.tcp) })
	if s.tlsL != nil {
		serve(func() error { return s.srv.ServeTLS(s.tlsL) })
	}
	if s.vm != nil && s.vm.spool != nil {
		wg.Go(func() { s.vm.spool.run(cctx) })
	}
	var err error
	select {
	case <-cctx.Done():
	case err = <-errs:
		err = fmt.Errorf("sipvm: serve: %w", err)
	}
	s.mu.Lock()
	stop() // under mu: no request joins s.calls after this
	s.mu.Unlock()
	s.Close()
	wg.Wait()
	s.front.stop()
	s.calls.Wait()
	return err
}

// context returns the context a request's work runs under: it ends when
// Serve does. ok is false before Serve.
func (s *Server) context() (context.Context, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.callCtx == nil || closed(s.callCtx) {
		return nil, false
	}
	s.calls.Add(1)
	return s.callCtx, true
}

// closed reports whether ctx has ended. Unlike ctx.Err, which locks the
// context, it reads Done's channel without a lock: callCtx is the parent
// of every call's context, and its lock is contended under load.
func closed(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// respond answers req on tx with code and reason, logging a failure.
func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hdrs ...sip.Header) {
	lines := make([]string, len(hdrs))
	for i, h := range hdrs {
		lines[i] = h.Name() + ": " + h.Value()
	}
	s.answer(req, tx, code, reason, lines...)
}

// answer sends code reason with the header lines ("Name: value"): built
// from the request's bytes when udpFront scanned it (udpTx.respondRaw),
// else by sipgo.
func (s *Server) answer(req *sip.Request, tx sip.ServerTransaction, code int, reason string, lines ...string) {
	var err error
	if t, ok := tx.(*udpTx); ok && t.raw != nil {
		err = t.respondRaw(code, reason, lines...)
	} else {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		for _, l := range lines {
			name, value, _ := strings.Cut(l, ": ")
			res.AppendHeader(sip.NewHeader(name, value))
		}
		err = tx.Respond(res)
	}
	if err != nil {
		s.log.Debug("sip: respond", "code", code, "to", req.StartLine(), "err", err)
	}
}

const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, NOTIFY, SUBSCRIBE, REFER"

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if s.routedThrough(req) {
		s.forwardInDialog(req, tx)
		return
	}
	s.respond(req, tx, sip.StatusOK, "OK",
		sip.NewHeader("Allow", allowed), sip.NewHeader("Accept", "application/sdp"))
}

// onOther takes the methods with no handler of their own: proxied when
// they carry our Route (in-dialog), else 405.
func (s *Server) onOther(req *sip.Request, tx sip.ServerTransaction) {
	switch {
	case s.routedThrough(req):
		s.forwardInDialog(req, tx)
	case req.Method == sip.BYE || req.Method == sip.INFO || req.Method == sip.UPDATE || req.Method == sip.PRACK:
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
	default:
		s.respond(req, tx, sip.StatusMethodNotAllowed, "Method Not Allowed", sip.NewHeader("Allow", allowed))
	}
}

// onStrayCancel answers a CANCEL that matched no INVITE in progress.
func (s *Server) onStrayCancel(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
}

// onBye takes a BYE: proxied along a record-routed dialog, or ending a
// voicemail call of this peer, else 481.
func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	switch {
	case s.routedThrough(req):
		s.forwardInDialog(req, tx)
	case s.vm != nil && s.vm.dialogs.ReadBye(req, tx) == nil:
	default:
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
	}
}
