package dht

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HTTP headers of the RPC protocol.
const (
	headerVersion  = "Voicering-Version"  // the version a request is written in
	headerVersions = "Voicering-Versions" // the versions a peer serves, on a 505 answer
	rpcPrefix      = "/rpc/"
	maxClients     = 4096 // per-peer HTTP clients kept before the oldest idle are dropped
)

// TLSConfig configures a TLSTransport.
type TLSConfig struct {
	// Identity is the key (and certificate) the transport authenticates
	// with. Required.
	Identity *Identity
	// Addr is the address to listen on, e.g. ":7946" or "127.0.0.1:0".
	// Empty: a client that only calls out.
	Addr string
	// AdvertiseAddr is the address other peers reach this one at.
	// Zero: the listener's address.
	AdvertiseAddr string
	// CA, if set, closes the ring: only peers (and clients) whose
	// certificate chains to CA are admitted, both ways. Nil: an open ring,
	// where any Ed25519 key may join but a node ID is still bound to the
	// key that proves it.
	CA *x509.Certificate
	// Versions lists the protocol versions served and spoken, newest
	// preferred. Zero: {ProtocolVersion}.
	Versions []int
	// MaxMessage bounds request and response bodies in bytes.
	// Zero: DefaultMaxMessage.
	MaxMessage int
	// Logger receives transport errors worth knowing. Nil: discarded.
	Logger *slog.Logger

	// http2Only makes the transport speak and serve HTTP/2 only, as
	// peers did before the framed protocol: for version-skew tests.
	http2Only bool
}

// TLSTransport carries calls between peers on mutually authenticated TLS
// 1.3. One connection per peer pair multiplexes every concurrent call: in
// the framed protocol (frame.go) when both peers speak it, which TLS ALPN
// settles, else in HTTP/2, which every version of voicering speaks.
type TLSTransport struct {
	cfg  TLSConfig
	self Peer
	cert tls.Certificate
	ln   net.Listener
	log  *slog.Logger
	met  Meter

	mu       sync.Mutex
	clients  map[Peer]*http.Client // HTTP/2, for peers that speak only it
	fconns   map[Peer]*fslot       // framed connections
	h2only   map[string]time.Time  // address → until when it is called over HTTP/2
	versions map[string]int        // address → version negotiated with it
	admitted map[[32]byte]verdict
	serving  bool
	closed   bool
	wg       sync.WaitGroup // framed connections' readers
}

var _ Transport = (*TLSTransport)(nil)

// NewTLSTransport checks cfg, fills its defaults and, if cfg.Addr is set,
// starts listening (so Local().Addr is known before Serve).
func NewTLSTransport(cfg TLSConfig) (*TLSTransport, error) {
	if cfg.Identity == nil {
		return nil, errors.New("dht: tls transport: no identity")
	}
	if len(cfg.Versions) == 0 {
		cfg.Versions = []int{ProtocolVersion}
	}
	cfg.Versions = slices.Clone(cfg.Versions)
	slices.SortFunc(cfg.Versions, func(a, b int) int { return b - a })
	for _, v := range cfg.Versions {
		if v <= 0 {
			return nil, fmt.Errorf("dht: tls transport: bad protocol version %d", v)
		}
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.MaxMessage < 0 {
		return nil, fmt.Errorf("dht: tls transport: negative MaxMessage %d", cfg.MaxMessage)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cert, err := cfg.Identity.tlsCertificate()
	if err != nil {
		return nil, err
	}
	t := &TLSTransport{
		cfg:      cfg,
		self:     Peer{ID: cfg.Identity.ID()},
		cert:     cert,
		log:      log,
		clients:  make(map[Peer]*http.Client),
		fconns:   make(map[Peer]*fslot),
		h2only:   make(map[string]time.Time),
		versions: make(map[string]int),
		admitted: make(map[[32]byte]verdict),
	}
	if cfg.Addr != "" {
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("dht: listen: %w", err)
		}
		t.ln = ln
		t.self.Addr = ln.Addr().String()
	}
	if cfg.AdvertiseAddr != "" {
		t.self.Addr = cfg.AdvertiseAddr
	}
	return t, nil
}

// Local returns this transport's node ID and advertised address.
func (t *TLSTransport) Local() Peer { return t.self }

// Meter returns the transport's traffic counters.
func (t *TLSTransport) Meter() *Meter { return &t.met }

// Versions returns the protocol versions the transport speaks, newest
// first.
func (t *TLSTransport) Versions() []int { return slices.Clone(t.cfg.Versions) }

func (t *TLSTransport) tlsConfig() *tls.Config {
	protos := []string{alpnFramed, alpnH2}
	if t.cfg.http2Only {
		protos = []string{alpnH2}
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		NextProtos:   protos,
	}
}

// Serve answers calls with d until ctx ends. A transport serves once.
func (t *TLSTransport) Serve(ctx context.Context, d Dispatcher) error {
	t.mu.Lock()
	switch {
	case t.ln == nil:
		t.mu.Unlock()
		return errors.New("dht: serve: transport has no listener (TLSConfig.Addr is empty)")
	case t.closed:
		t.mu.Unlock()
		return ErrClosed
	case t.serving:
		t.mu.Unlock()
		return errors.New("dht: serve: already serving")
	}
	t.serving = true
	t.mu.Unlock()

	conf := t.tlsConfig()
	conf.ClientAuth = tls.RequireAnyClientCert
	// Admission is checked per request (see admit), not in the handshake,
	// so a refused caller learns why instead of seeing a bare TLS alert.
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.serveHTTP(w, r, d) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(t.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP2(true)
	srv.TLSConfig = conf.Clone() // the HTTP/2 set-up edits its own copy
	// The listener's connections are handshaken here and go to the framed
	// protocol or, for callers that offered only h2, to the HTTP/2 server.
	h2 := newHandoff(t.ln.Addr())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(h2) })
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tl := tls.NewListener(t.ln, conf)
	errc := make(chan error, 1)
	wg.Go(func() {
		var wait time.Duration
		for {
			c, err := tl.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) || sctx.Err() != nil {
					errc <- err
					return
				}
				// Out of file descriptors and the like: back off and go
				// on, as net/http does, rather than stop serving.
				wait = min(max(2*wait, 5*time.Millisecond), time.Second)
				t.log.Warn("accept failed; retrying", "err", err, "in", wait)
				select {
				case <-time.After(wait):
				case <-sctx.Done():
					errc <- nil
					return
				}
				continue
			}
			wait = 0
			wg.Go(func() { t.route(sctx, c.(*tls.Conn), h2, d) })
		}
	})
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("dht: serve %s: %w", t.self.Addr, err)
		}
	}
	cancel()
	t.ln.Close()
	h2.Close()
	srv.Close()
	wg.Wait()
	return err
}

// route handshakes an accepted connection and serves it in the protocol
// the caller chose.
func (t *TLSTransport) route(ctx context.Context, c *tls.Conn, h2 *handoff, d Dispatcher) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.HandshakeContext(ctx); err != nil {
		t.log.Debug("handshake failed", "from", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if c.ConnectionState().NegotiatedProtocol == alpnFramed {
		t.serveFramed(ctx, c, d)
		return
	}
	h2.push(c)
}

func (t *TLSTransport) serveHTTP(w http.ResponseWriter, r *http.Request, d Dispatcher) {
	method, ok := strings.CutPrefix(r.URL.Path, rpcPrefix)
	if r.Method != http.MethodPost || !ok || method == "" {
		http.Error(w, "not a voicering rpc", statusUnknownMethod)
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "no client certificate", http.StatusForbidden)
		return
	}
	from, err := t.admit(r.TLS.PeerCertificates)
	if err != nil {
		t.log.Info("refused caller", "err", err)
		http.Error(w, err.Error(), statusNotAdmitted)
		return
	}
	ver, err := strconv.Atoi(r.Header.Get(headerVersion))
	if err != nil || !slices.Contains(t.cfg.Versions, ver) {
		w.Header().Set(headerVersions, joinInts(t.cfg.Versions))
		http.Error(w, fmt.Sprintf("protocol version %q not served; this peer speaks %s", r.Header.Get(headerVersion), joinInts(t.cfg.Versions)), statusVersion)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(t.cfg.MaxMessage)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("request body over %d bytes", t.cfg.MaxMessage), statusTooLarge)
			return
		}
		http.Error(w, "read request body: "+err.Error(), statusBadRequest)
		return
	}
	status, resp := t.dispatch(r.Context(), d, &Request{From: from, Version: ver, Method: method, Body: body})
	if status != statusOK {
		http.Error(w, string(resp), status)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(resp)
}

// dispatch answers one call, in either protocol: statusOK and the
// handler's response, or the status and message of its error (a response
// over MaxMessage is ErrTooLarge). It counts the call's traffic.
func (t *TLSTransport) dispatch(ctx context.Context, d Dispatcher, req *Request) (int, []byte) {
	resp, err := d.Dispatch(ctx, req)
	if err == nil && len(resp) > t.cfg.MaxMessage {
		err = fmt.Errorf("%w: response of %d bytes", ErrTooLarge, len(resp))
	}
	t.met.Add(req.From, len(resp), len(req.Method)+len(req.Body))
	if err != nil {
		return statusOf(err), []byte(err.Error())
	}
	return statusOK, resp
}

// admit checks a caller's certificate chain (see verifyPeer), caching
// verdicts by leaf certificate.
func (t *TLSTransport) admit(chain []*x509.Certificate) (ID, error) {
	key := sha256.Sum256(chain[0].Raw)
	t.mu.Lock()
	v, ok := t.admitted[key]
	t.mu.Unlock()
	if ok {
		return v.id, v.err
	}
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	id, err := verifyPeer(raw, t.cfg.CA)
	t.mu.Lock()
	if len(t.admitted) >= maxClients {
		clear(t.admitted)
	}
	t.admitted[key] = verdict{id, err}
	t.mu.Unlock()
	return id, err
}

type verdict struct {
	id  ID
	err error
}

func joinInts(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

// clientTLS is the TLS configuration for calling peer to, whose check
// insists on to.ID (unless zero).
func (t *TLSTransport) clientTLS(to Peer) *tls.Config {
	conf := t.tlsConfig()
	conf.InsecureSkipVerify = true // verifyPeer below does the checking that matters
	ca := t.cfg.CA
	conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		id, err := verifyPeer(raw, ca)
		if err != nil {
			return err
		}
		if !to.ID.IsZero() && id != to.ID {
			return fmt.Errorf("%w: %s answered as node %s", ErrPeerID, to, id.Short())
		}
		return nil
	}
	return conf
}

// client returns the HTTP client for peer to, whose TLS check insists on
// to.ID (unless zero).
func (t *TLSTransport) client(to Peer) (*http.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if c := t.clients[to]; c != nil {
		return c, nil
	}
	if len(t.clients) >= maxClients {
		for p, c := range t.clients { // map order: an arbitrary victim
			c.CloseIdleConnections()
			delete(t.clients, p)
			break
		}
	}
	conf := t.clientTLS(to)
	conf.NextProtos = []string{alpnH2}
	tr := &http.Transport{
		TLSClientConfig:        conf,
		ForceAttemptHTTP2:      true,
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:    10 * time.Second,
		IdleConnTimeout:        2 * time.Minute,
		MaxResponseHeaderBytes: 16 << 10,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	c := &http.Client{Transport: tr}
	t.clients[to] = c
	return c, nil
}

// Call sends a request to method on peer to. It speaks the newest version
// both sides know: on a version refusal it retries once in the newest
// common version and remembers it for the peer's address.
func (t *TLSTransport) Call(ctx context.Context, to Peer, method string, body []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		// Send nothing: the caller will not wait for the answer, so the
		// peer must not act on the request either (a canceled write
		// stays unwritten).
		return nil, fmt.Errorf("dht: call %s on %s: %w", method, to, err)
	}
	if len(body) > t.cfg.MaxMessage {
		return nil, fmt.Errorf("dht: call %s on %s: %w: request of %d bytes", method, to, ErrTooLarge, len(body))
	}
	var fc *fconn
	if !t.cfg.http2Only {
		var err error
		if fc, err = t.framedConn(ctx, to); err != nil {
			return nil, dialError(ctx, method, to, err)
		}
	}
	var c *http.Client
	if fc == nil {
		var err error
		if c, err = t.client(to); err != nil {
			return nil, fmt.Errorf("dht: call %s on %s: %w", method, to, err)
		}
	}
	t.mu.Lock()
	v, ok := t.versions[to.Addr]
	t.mu.Unlock()
	if !ok {
		v = t.cfg.Versions[0]
	}
	redialed := false
	for attempt := 0; ; attempt++ {
		var resp []byte
		var err error
		if fc != nil {
			resp, err = t.callFramed(ctx, fc, to, method, body, v)
		} else {
			resp, err = t.do(ctx, c, to, method, body, v)
		}
		if errors.Is(err, errIdleClosed) && !redialed {
			// The connection was closed as idle just as this call
			// began: nothing was sent. Dial again, once.
			redialed = true
			if fc, err = t.framedConn(ctx, to); err != nil {
				return nil, dialError(ctx, method, to, err)
			}
			if fc == nil {
				if c, err = t.client(to); err != nil {
					return nil, fmt.Errorf("dht: call %s on %s: %w", method, to, err)
				}
			}
			attempt--
			continue
		}
		var re *RemoteError
		if attempt == 0 && errors.As(err, &re) && re.Status == statusVersion {
			if nv := newestCommon(t.cfg.Versions, re.Message); nv > 0 && nv != v {
				t.mu.Lock()
				t.versions[to.Addr] = nv
				t.mu.Unlock()
				v = nv
				continue
			}
		}
		return resp, err
	}
}

// newestCommon returns the newest of ours among the comma-separated
// versions in served, or 0.
func newestCommon(ours []int, served string) int {
	for _, v := range ours { // newest first
		for _, s := range strings.Split(served, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n == v {
				return v
			}
		}
	}
	return 0
}

func (t *TLSTransport) do(ctx context.Context, c *http.Client, to Peer, method string, body []byte, v int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+to.Addr+rpcPrefix+method, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("dht: call %s on %s: %w: %v", method, to, ErrUnreachable, err)
	}
	req.Header.Set(headerVersion, strconv.Itoa(v))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		return nil, dialError(ctx, method, to, err)
	}
	defer resp.Body.Close()
	from := to.ID
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		if pub, ok := resp.TLS.PeerCertificates[0].PublicKey.(ed25519.PublicKey); ok {
			from = IDOf(pub)
		}
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, int64(t.cfg.MaxMessage)+1))
	t.met.Add(from, len(method)+len(body), len(rb))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dht: call %s on %s: %w", method, to, ctx.Err())
		}
		return nil, fmt.Errorf("dht: call %s on %s: %w: read response: %v", method, to, ErrUnreachable, err)
	}
	if len(rb) > t.cfg.MaxMessage {
		return nil, fmt.Errorf("dht: call %s on %s: %w: response over %d bytes", method, to, ErrTooLarge, t.cfg.MaxMessage)
	}
	if resp.StatusCode != statusOK {
		msg := strings.TrimSpace(string(rb))
		if resp.StatusCode == statusVersion {
			msg = resp.Header.Get(headerVersions)
		}
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return nil, &RemoteError{Peer: to, Method: method, Status: resp.StatusCode, Message: msg}
	}
	return rb, nil
}

// dialError is the error of a call whose request could not be sent.
func dialError(ctx context.Context, method string, to Peer, err error) error {
	var op *net.OpError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("dht: call %s on %s: %w", method, to, ctx.Err())
	case errors.Is(err, ErrClosed):
		return fmt.Errorf("dht: call %s on %s: %w", method, to, err)
	case errors.Is(err, ErrPeerID), errors.Is(err, ErrNotAdmitted):
		return fmt.Errorf("dht: call %s on %s: %w", method, to, unwrapURL(err))
	case errors.As(err, &op) && op.Op == "remote error":
		return fmt.Errorf("dht: call %s on %s: %w: the peer refused the handshake (%v)", method, to, ErrNotAdmitted, op.Err)
	}
	return fmt.Errorf("dht: call %s on %s: %w: %v", method, to, ErrUnreachable, unwrapURL(err))
}

// unwrapURL drops net/http's url.Error wrapper, whose message repeats
// the URL we already name.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Close stops listening (if Serve was never called), closes framed
// connections (their calls fail) and drops idle HTTP/2 ones; later calls
// fail with ErrClosed.
func (t *TLSTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	for p, c := range t.clients {
		c.CloseIdleConnections()
		delete(t.clients, p)
	}
	t.closeFramedLocked()
	var err error
	if t.ln != nil && !t.serving {
		err = t.ln.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}
