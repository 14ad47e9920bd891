package dht

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The framed protocol ("voicering/1" in TLS ALPN) carries calls between
// peers that both speak it; a peer that offers only "h2" is called over
// HTTP/2 as before (see TLSTransport). One connection per peer pair
// carries every concurrent call as frames:
//
//	length  uint32   bytes of payload after this 13-byte header
//	kind    byte     1 request, 2 response, 3 cancel; +0x80: more frames follow
//	id      uint64   the call, chosen by the caller
//	payload
//
// A request's payload is uvarint version, uvarint method length, method,
// body; a response's is uvarint status (the HTTP codes of rpc.go), then
// the body or, for an error status, its message (for 505, the versions
// served, comma-separated). A cancel has no payload: the caller gave up,
// and the handler's context ends. Messages over bulkChunk bytes are sent
// as several frames of one id (all but the last with the 0x80 bit), one
// such message at a time, and small frames are written between their
// chunks, so a 1 MiB shard delays a keep-alive by one chunk at most. Each
// side writes through a frameWriter, which puts every frame queued while
// it writes into the next write: under load many calls share one TLS
// record and one system call. Unknown kinds are ignored, so a later
// version can add frames.
const (
	alpnFramed = "voicering/1"
	alpnH2     = "h2"

	frameHeader   = 13
	kindRequest   = 1
	kindResponse  = 2
	kindCancel    = 3
	kindMore      = 0x80
	bulkChunk     = 64 << 10
	frameOverhead = 1 << 10 // room for the version, method and status before a body

	maxHandlers     = 256              // calls one connection runs at once; its reader waits beyond
	maxInlineWrites = 8                // writes a sender makes before the writer goroutine takes over
	writeTimeout    = 30 * time.Second // a peer that takes no bytes for this long is gone
	idleTimeout     = 2 * time.Minute  // a client connection without calls is closed
	h2Memory        = 10 * time.Minute // how long an address that spoke only HTTP/2 is called over it
)

// errFrameTooLarge reports a message over the limit, whose bytes were
// skipped: the connection stays usable.
var errFrameTooLarge = errors.New("frame too large")

// frameReader reads messages, joining chunked ones.
type frameReader struct {
	r     *bufio.Reader
	limit int // payload bytes of one message
	hdr   [frameHeader]byte

	partID   uint64 // the chunked message being joined, if part != nil
	partKind byte
	part     []byte
	partBig  bool // over the limit: its chunks are skipped
}

// next returns the next whole message. A message over the limit returns
// errFrameTooLarge with its kind and id once all its bytes are skipped;
// any other error means the connection is unusable.
func (fr *frameReader) next() (kind byte, id uint64, payload []byte, err error) {
	for {
		if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
			return 0, 0, nil, err
		}
		n := binary.BigEndian.Uint32(fr.hdr[0:4])
		kind, id = fr.hdr[4], binary.BigEndian.Uint64(fr.hdr[5:13])
		more := kind&kindMore != 0
		kind &^= kindMore
		// Whole small frames come between the chunks of one large message.
		joining := fr.part != nil || fr.partBig
		cont := joining && id == fr.partID && kind == fr.partKind
		if joining && !cont && more {
			return 0, 0, nil, fmt.Errorf("a second chunked message (call %d) inside call %d's", id, fr.partID)
		}
		if !cont && !more { // a whole message in one frame
			if int64(n) > int64(fr.limit) {
				if _, err := fr.r.Discard(int(n)); err != nil {
					return 0, 0, nil, err
				}
				return kind, id, nil, errFrameTooLarge
			}
			payload = make([]byte, n)
			if _, err := io.ReadFull(fr.r, payload); err != nil {
				return 0, 0, nil, err
			}
			return kind, id, payload, nil
		}
		if !cont { // the first chunk starts with the message's length
			if n < 4 {
				return 0, 0, nil, errors.New("chunked message without its length")
			}
			var total [4]byte
			if _, err := io.ReadFull(fr.r, total[:]); err != nil {
				return 0, 0, nil, err
			}
			n -= 4
			fr.partID, fr.partKind = id, kind
			if t := binary.BigEndian.Uint32(total[:]); int64(t) <= int64(fr.limit) {
				fr.part = make([]byte, 0, t)
			} else {
				fr.partBig = true
			}
		}
		if fr.partBig || int64(len(fr.part))+int64(n) > int64(fr.limit) {
			fr.part, fr.partBig = nil, true
			if _, err := fr.r.Discard(int(n)); err != nil {
				return 0, 0, nil, err
			}
		} else {
			start := len(fr.part)
			fr.part = slices.Grow(fr.part, int(n))[:start+int(n)]
			if _, err := io.ReadFull(fr.r, fr.part[start:]); err != nil {
				return 0, 0, nil, err
			}
		}
		if more {
			continue
		}
		payload, big := fr.part, fr.partBig
		fr.part, fr.partBig = nil, false
		if big {
			return kind, id, nil, errFrameTooLarge
		}
		return kind, id, payload, nil
	}
}

// frameWriter writes frames to a connection. A sender that finds nobody
// writing writes at once, itself, what is queued (its frame, what others
// queue meanwhile, a chunk of a bulk message each time), for at most
// maxInlineWrites writes: no hand-off when the connection is quiet, and
// under load many frames share one TLS record and system call. What is
// still queued then goes to the connection's writer goroutine (run), so a
// caller whose deadline passed is never held up long pushing other
// callers' bytes. Small frames go first; bulk messages are written a
// chunk at a time between them.
type frameWriter struct {
	c    net.Conn
	wake chan struct{} // frames wait for the writer goroutine (capacity 1)

	mu    sync.Mutex
	small []byte // whole small frames, encoded
	spare []byte
	bulk  []*bulkMsg
	busy  bool // a write is under way
	err   error
}

func newFrameWriter(c net.Conn) *frameWriter {
	return &frameWriter{c: c, wake: make(chan struct{}, 1)}
}

type bulkMsg struct {
	kind       byte
	id         uint64
	head, body []byte // what is left to write: the prefix, then the body
	first      bool   // no chunk written yet
}

// chunk appends the next frame of m to out and says whether m is done.
func (m *bulkMsg) chunk(out []byte) ([]byte, bool) {
	left := len(m.head) + len(m.body)
	n, k := left, m.kind
	if n > bulkChunk {
		n, k = bulkChunk, k|kindMore
	}
	if m.first { // then k has kindMore: the message is over one chunk
		out = appendHeader(out, k, m.id, 4+n)
		out = binary.BigEndian.AppendUint32(out, uint32(left))
		m.first = false
	} else {
		out = appendHeader(out, k, m.id, n)
	}
	h := min(n, len(m.head))
	out = append(out, m.head[:h]...)
	out = append(out, m.body[:n-h]...)
	m.head, m.body = m.head[h:], m.body[n-h:]
	return out, n == left
}

func appendHeader(b []byte, kind byte, id uint64, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, kind)
	return binary.BigEndian.AppendUint64(b, id)
}

// send writes the message prefix+body, or queues it for whoever writes.
// body is copied unless owned: the caller gives it up. It fails once the
// connection has failed to write.
func (w *frameWriter) send(kind byte, id uint64, prefix, body []byte, owned bool) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if n := len(prefix) + len(body); n <= bulkChunk {
		w.small = appendHeader(w.small, kind, id, n)
		w.small = append(w.small, prefix...)
		w.small = append(w.small, body...)
	} else {
		if !owned {
			body = slices.Clone(body)
		}
		w.bulk = append(w.bulk, &bulkMsg{kind: kind, id: id, head: prefix, body: body, first: true})
	}
	if w.busy { // the writer sees this frame before it stops
		w.mu.Unlock()
		return nil
	}
	w.busy = true
	for i := 0; i < maxInlineWrites && w.err == nil && w.writeOnce(); i++ {
	}
	w.busy = false
	more, err := len(w.small) > 0 || len(w.bulk) > 0, w.err
	w.mu.Unlock()
	if more && err == nil {
		w.kick()
	}
	return err
}

// kick wakes the writer goroutine.
func (w *frameWriter) kick() {
	select {
	case w.wake <- struct{}{}:
	default: // already woken
	}
}

// drop removes the queued messages of call id that have not begun to go
// out: the caller gave up on them.
func (w *frameWriter) drop(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bulk = slices.DeleteFunc(w.bulk, func(m *bulkMsg) bool { return m.id == id && m.first })
}

// run writes what is queued until stop is closed or a write fails, which
// closes the connection (its reader then fails the calls waiting).
func (w *frameWriter) run(stop <-chan struct{}) {
	for {
		select {
		case <-w.wake:
		case <-stop:
			return
		}
		if err := w.flush(); err != nil {
			return
		}
	}
}

// flush writes everything queued, and what is queued meanwhile, until the
// queue is empty. A sender writing meanwhile kicks it again when done.
func (w *frameWriter) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy {
		return w.err
	}
	w.busy = true
	for w.err == nil && w.writeOnce() {
	}
	w.busy = false
	return w.err
}

// writeOnce writes the small frames queued and the next chunk of a bulk
// message in one write, and reports whether there was anything to write.
// w.mu is held (and released during the write); w.busy is set.
func (w *frameWriter) writeOnce() bool {
	// out is written unlocked, so no one else may hold its array: senders
	// append to the spare one meanwhile.
	out := w.small
	w.small, w.spare = w.spare[:0], nil
	if len(w.bulk) > 0 {
		var done bool
		if out, done = w.bulk[0].chunk(out); done {
			w.bulk[0] = nil
			w.bulk = w.bulk[1:]
		}
	}
	if len(out) == 0 {
		w.spare = out[:0]
		return false
	}
	w.mu.Unlock()
	w.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := w.c.Write(out)
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
		w.c.Close() // the reader sees it and fails the calls waiting
	}
	if cap(out) <= 4*bulkChunk { // else let a large one go
		w.spare = out[:0]
	}
	return true
}

// requestPrefix encodes what precedes a request's body.
func requestPrefix(v int, method string) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(method))
	b = binary.AppendUvarint(b, uint64(v))
	b = binary.AppendUvarint(b, uint64(len(method)))
	return append(b, method...)
}

func parseRequest(p []byte) (v int, method string, body []byte, err error) {
	ver, n := binary.Uvarint(p)
	if n <= 0 || ver > 1<<20 {
		return 0, "", nil, errors.New("bad version")
	}
	p = p[n:]
	ml, n := binary.Uvarint(p)
	if n <= 0 || ml > 256 || uint64(len(p)-n) < ml {
		return 0, "", nil, errors.New("bad method")
	}
	p = p[n:]
	return int(ver), string(p[:ml]), p[ml:], nil
}

// --- client side ---------------------------------------------------------

// fconn is a framed connection this transport dialed.
type fconn struct {
	t    *TLSTransport
	key  Peer // the t.fconns entry
	from ID   // the authenticated server
	c    *tls.Conn
	w    *frameWriter

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan fresult
	err     error // why the connection ended; set once
	idle    *time.Timer
	used    atomic.Int64  // unix nanoseconds of the last call
	stop    chan struct{} // closed when the reader ends: the writer ends too
}

type fresult struct {
	status int
	body   []byte
	err    error
}

// fslot is a connection being dialed or dialed, shared by the callers of
// one peer.
type fslot struct {
	ready chan struct{}
	fc    *fconn
	err   error
}

// framedConn returns the framed connection to peer to, dialing it if
// needed, or nil (and no error) when the peer speaks only HTTP/2.
func (t *TLSTransport) framedConn(ctx context.Context, to Peer) (*fconn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	if until, ok := t.h2only[to.Addr]; ok {
		if time.Now().Before(until) {
			t.mu.Unlock()
			return nil, nil
		}
		delete(t.h2only, to.Addr)
	}
	if s := t.fconns[to]; s != nil {
		t.mu.Unlock()
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if s.err != nil && ctx.Err() == nil && (errors.Is(s.err, context.Canceled) || errors.Is(s.err, context.DeadlineExceeded)) {
			return t.framedConn(ctx, to) // the dialer's caller gave up, not we
		}
		return s.fc, s.err
	}
	s := &fslot{ready: make(chan struct{})}
	t.fconns[to] = s
	if len(t.fconns) > maxClients {
		t.evictIdleLocked()
	}
	t.mu.Unlock()

	fc, h2, err := t.dialFramed(ctx, to)
	t.mu.Lock()
	switch {
	case err == nil && t.closed:
		if fc != nil {
			fc.idle.Stop()
			fc.c.Close()
		}
		fc, err = nil, ErrClosed
	case err == nil && h2:
		t.h2only[to.Addr] = time.Now().Add(h2Memory)
	}
	if fc == nil {
		delete(t.fconns, to)
	} else {
		t.wg.Go(fc.read)
		t.wg.Go(func() { fc.w.run(fc.stop) })
	}
	s.fc, s.err = fc, err
	close(s.ready)
	t.mu.Unlock()
	return fc, err
}

// evictIdleLocked closes one connection without calls in flight.
func (t *TLSTransport) evictIdleLocked() {
	for _, s := range t.fconns {
		select {
		case <-s.ready:
		default:
			continue
		}
		if s.fc != nil && s.fc.retire() {
			delete(t.fconns, s.fc.key)
			return
		}
	}
}

// dialFramed connects to to and says whether it speaks the framed
// protocol (h2 true: only HTTP/2; the connection is closed).
func (t *TLSTransport) dialFramed(ctx context.Context, to Peer) (fc *fconn, h2 bool, err error) {
	conf := t.clientTLS(to)
	conf.NextProtos = []string{alpnFramed, alpnH2}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, Config: conf}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := d.DialContext(hctx, "tcp", to.Addr)
	if err != nil {
		return nil, false, err
	}
	c := nc.(*tls.Conn)
	st := c.ConnectionState()
	if st.NegotiatedProtocol != alpnFramed {
		c.Close()
		return nil, true, nil
	}
	from := to.ID
	if len(st.PeerCertificates) > 0 {
		if pub, ok := st.PeerCertificates[0].PublicKey.(ed25519.PublicKey); ok {
			from = IDOf(pub)
		}
	}
	fc = &fconn{t: t, key: to, from: from, c: c, w: newFrameWriter(c), pending: make(map[uint64]chan fresult), stop: make(chan struct{})}
	fc.used.Store(time.Now().UnixNano())
	fc.idle = time.AfterFunc(idleTimeout, fc.closeIfIdle)
	return fc, false, nil
}

// errIdleClosed is why a call found its connection closed for being idle
// just as it started; the caller dials again.
var errIdleClosed = errors.New("connection closed while idle")

// retire closes the connection if no call is in flight, and reports
// whether it did. Calls that start after it fail with errIdleClosed.
// Lock order: t.mu before fc.mu.
func (fc *fconn) retire() bool {
	fc.mu.Lock()
	if fc.pending == nil || len(fc.pending) > 0 {
		fc.mu.Unlock()
		return false
	}
	fc.pending, fc.err = nil, errIdleClosed
	fc.mu.Unlock()
	fc.c.Close()
	return true
}

// closeIfIdle closes the connection when no call used it for idleTimeout,
// else looks again when that time is up.
func (fc *fconn) closeIfIdle() {
	since := time.Since(time.Unix(0, fc.used.Load()))
	fc.mu.Lock()
	ended := fc.pending == nil
	fc.mu.Unlock()
	switch {
	case ended:
	case since < idleTimeout || !fc.retire():
		fc.idle.Reset(idleTimeout - min(since, idleTimeout-time.Second))
	default:
		fc.t.forget(fc)
	}
}

// forget drops fc's entry, so that the next call dials anew.
func (t *TLSTransport) forget(fc *fconn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.fconns[fc.key]; s != nil && s.fc == fc {
		delete(t.fconns, fc.key)
	}
}

// read delivers responses until the connection fails, then fails the
// calls still waiting and forgets the connection.
func (fc *fconn) read() {
	fr := frameReader{r: bufio.NewReaderSize(fc.c, 32<<10), limit: fc.t.cfg.MaxMessage + frameOverhead}
	var err error
	for {
		var kind byte
		var id uint64
		var p []byte
		kind, id, p, err = fr.next()
		if err != nil && !errors.Is(err, errFrameTooLarge) {
			break
		}
		if kind != kindResponse {
			continue
		}
		r := fresult{err: err}
		if err == nil {
			st, n := binary.Uvarint(p)
			if n <= 0 {
				err = errors.New("bad response status")
				break
			}
			r.status, r.body = int(st), p[n:]
		}
		fc.mu.Lock()
		ch := fc.pending[id]
		delete(fc.pending, id)
		fc.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	fc.c.Close()
	close(fc.stop)
	fc.idle.Stop()
	fc.mu.Lock()
	if fc.err == nil {
		fc.err = fmt.Errorf("connection lost: %w", err)
	}
	pending := fc.pending
	fc.pending = nil
	fc.mu.Unlock()
	for _, ch := range pending {
		ch <- fresult{err: fc.err}
	}
	fc.t.forget(fc)
}

// call sends one request and waits for its response.
func (fc *fconn) call(ctx context.Context, method string, body []byte, v int) (fresult, error) {
	if err := ctx.Err(); err != nil { // ended while dialing: send nothing
		return fresult{}, err
	}
	ch := make(chan fresult, 1)
	fc.mu.Lock()
	if fc.pending == nil {
		err := fc.err
		fc.mu.Unlock()
		return fresult{}, err
	}
	fc.next++
	id := fc.next
	fc.pending[id] = ch
	fc.mu.Unlock()
	fc.used.Store(time.Now().UnixNano())
	if err := fc.w.send(kindRequest, id, requestPrefix(v, method), body, false); err != nil {
		fc.forget(id)
		return fresult{}, err
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		if fc.forget(id) {
			fc.w.drop(id) // a large request not yet begun need not go
			fc.w.send(kindCancel, id, nil, nil, true)
		}
		return fresult{}, ctx.Err()
	}
}

// forget drops a call's entry; false if its response already came.
func (fc *fconn) forget(id uint64) bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	_, ok := fc.pending[id]
	delete(fc.pending, id)
	return ok
}

// callFramed is one attempt of Call over the framed connection fc.
func (t *TLSTransport) callFramed(ctx context.Context, fc *fconn, to Peer, method string, body []byte, v int) ([]byte, error) {
	r, err := fc.call(ctx, method, body, v)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("dht: call %s on %s: %w", method, to, ctx.Err())
	case errors.Is(err, errIdleClosed):
		return nil, err // Call dials again
	case errors.Is(err, errFrameTooLarge):
		return nil, fmt.Errorf("dht: call %s on %s: %w: response over %d bytes", method, to, ErrTooLarge, t.cfg.MaxMessage)
	case err != nil:
		return nil, fmt.Errorf("dht: call %s on %s: %w: %v", method, to, ErrUnreachable, err)
	}
	t.met.Add(fc.from, len(method)+len(body), len(r.body))
	if r.status != statusOK {
		msg := string(r.body)
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return nil, &RemoteError{Peer: to, Method: method, Status: r.status, Message: msg}
	}
	if len(r.body) > t.cfg.MaxMessage {
		return nil, fmt.Errorf("dht: call %s on %s: %w: response over %d bytes", method, to, ErrTooLarge, t.cfg.MaxMessage)
	}
	return r.body, nil
}

// closeFramedLocked closes every framed client connection; t.mu is held.
func (t *TLSTransport) closeFramedLocked() {
	for _, s := range t.fconns {
		select {
		case <-s.ready:
			if s.fc != nil {
				s.fc.c.Close()
			}
		default: // its dialer sees t.closed
		}
	}
}

// --- server side ---------------------------------------------------------

// serveFramed answers the calls on one framed connection until it fails
// or ctx ends, and waits for its handlers.
func (t *TLSTransport) serveFramed(ctx context.Context, c *tls.Conn, d Dispatcher) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var from ID
	admitErr := errors.New("no client certificate")
	if chain := c.ConnectionState().PeerCertificates; len(chain) > 0 {
		from, admitErr = t.admit(chain)
		if admitErr != nil {
			t.log.Info("refused caller", "err", admitErr)
		}
	}
	w := newFrameWriter(c)
	stopWriter := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() { w.run(stopWriter) })
	defer func() { close(stopWriter); writer.Wait() }()
	respond := func(id uint64, status int, body []byte) {
		w.send(kindResponse, id, binary.AppendUvarint(nil, uint64(status)), body, true)
	}
	var mu sync.Mutex
	running := map[uint64]context.CancelFunc{}
	slots := make(chan struct{}, maxHandlers)
	var handlers sync.WaitGroup
	defer func() {
		cancel()
		c.Close()
		handlers.Wait()
	}()
	fr := frameReader{r: bufio.NewReaderSize(c, 32<<10), limit: t.cfg.MaxMessage + frameOverhead}
	for {
		kind, id, p, err := fr.next()
		switch {
		case errors.Is(err, errFrameTooLarge):
			if kind == kindRequest {
				respond(id, statusTooLarge, fmt.Appendf(nil, "request body over %d bytes", t.cfg.MaxMessage))
			}
			continue
		case err != nil:
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				t.log.Debug("framed connection ended", "from", from.Short(), "err", err)
			}
			return
		}
		switch kind {
		case kindCancel:
			mu.Lock()
			if f := running[id]; f != nil {
				f()
			}
			mu.Unlock()
			w.drop(id) // an answer queued and not begun need not go
			continue
		case kindRequest:
		default:
			continue
		}
		if admitErr != nil {
			respond(id, statusNotAdmitted, []byte(admitErr.Error()))
			continue
		}
		ver, method, body, err := parseRequest(p)
		switch {
		case err != nil:
			respond(id, statusBadRequest, []byte("malformed request: "+err.Error()))
			continue
		case !slices.Contains(t.cfg.Versions, ver):
			respond(id, statusVersion, []byte(joinInts(t.cfg.Versions)))
			continue
		case len(body) > t.cfg.MaxMessage:
			respond(id, statusTooLarge, fmt.Appendf(nil, "request body over %d bytes", t.cfg.MaxMessage))
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		hctx, hcancel := context.WithCancel(ctx)
		mu.Lock()
		running[id] = hcancel
		mu.Unlock()
		handlers.Go(func() {
			defer func() { <-slots }()
			status, resp := t.dispatch(hctx, d, &Request{From: from, Version: ver, Method: method, Body: body})
			mu.Lock()
			delete(running, id)
			mu.Unlock()
			gaveUp := hctx.Err() != nil
			hcancel()
			if gaveUp {
				// The caller cancelled (it reads no answer), or the
				// connection is closing (it sees the peer gone, not an
				// error of ours).
				return
			}
			respond(id, status, resp)
		})
	}
}

// handoff is a net.Listener whose connections are pushed to it: the
// HTTP/2 server's share of the transport's listener.
type handoff struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoff) push(c net.Conn) {
	select {
	case h.ch <- c:
	case <-h.done:
		c.Close()
	}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }
