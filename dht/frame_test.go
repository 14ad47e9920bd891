package dht

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// usesFramed says whether cli calls srv in the framed protocol.
func usesFramed(cli *TLSTransport, srv Peer) bool {
	cli.mu.Lock()
	defer cli.mu.Unlock()
	s := cli.fconns[srv]
	return s != nil && s.fc != nil
}

func TestFramedAndHTTP2PeersCallEachOther(t *testing.T) {
	tests := []struct {
		name           string
		client, server bool // http2Only
		wantFramed     bool
	}{
		{"both framed", false, false, true},
		{"framed client, HTTP/2-only server", false, true, false},
		{"HTTP/2-only client, framed server", true, false, false},
		{"both HTTP/2-only", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serveTLS(t, TLSConfig{http2Only: tt.server})
			cli := clientTLS(t, TLSConfig{http2Only: tt.client})
			for i := range 3 { // later calls reuse what the first found out
				body := []byte{byte(i), 'x'}
				got, err := cli.Call(ctxT(t), srv.tr.Local(), "echo", body)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				me := cli.Local().ID
				if want := append(append(me[:], 1), body...); !bytes.Equal(got, want) {
					t.Fatalf("call %d: echo = %x, want %x", i, got, want)
				}
			}
			if got := usesFramed(cli, srv.tr.Local()); got != tt.wantFramed {
				t.Errorf("framed connection = %v, want %v", got, tt.wantFramed)
			}
			if got := srv.calls.Load(); got != 3 {
				t.Errorf("handler ran %d times, want 3", got)
			}
		})
	}
}

func TestFramedLargeMessages(t *testing.T) {
	srv := serveTLS(t, TLSConfig{MaxMessage: 3 << 20})
	cli := clientTLS(t, TLSConfig{})
	tests := []struct {
		name    string
		size    int
		wantErr error
	}{
		{"one chunk", bulkChunk - 100, nil},
		{"just over a chunk", bulkChunk + 1, nil},
		{"a shard", 1 << 20, nil},
		{"at the limit", 3<<20 - IDSize - 1, nil},
		{"over the limit", 3<<20 + 1, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := make([]byte, tt.size)
			for i := range body {
				body[i] = byte(i * 7)
			}
			// The client refuses bodies over its own limit before sending;
			// call with a client whose limit is larger to reach the server.
			c := cli
			if tt.wantErr != nil {
				c = clientTLS(t, TLSConfig{MaxMessage: 8 << 20})
			}
			got, err := c.Call(ctxT(t), srv.tr.Local(), "echo", body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				// The connection survives: the next call works.
				if _, err := c.Call(ctxT(t), srv.tr.Local(), "echo", []byte("after")); err != nil {
					t.Fatalf("call after the refused one: %v", err)
				}
				return
			}
			if !bytes.Equal(got[IDSize+1:], body) {
				t.Errorf("echo of %d bytes came back different", tt.size)
			}
		})
	}
}

func TestFramedCancelReachesHandler(t *testing.T) {
	srv := serveTLS(t, TLSConfig{})
	cli := clientTLS(t, TLSConfig{})
	started := make(chan struct{})
	ended := make(chan error, 1)
	var mux Mux
	mux.Handle("wait", func(ctx context.Context, _ *Request) ([]byte, error) {
		close(started)
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("handler's context did not end")
		}
		return nil, ctx.Err()
	})
	// A second server, for the handler above.
	other := serveTLSMux(t, &mux)
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctx, other.Local(), "wait", nil)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("call err = %v, want context.Canceled", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler: %v, want its context canceled", err)
	}
	// The connection is still good.
	if _, err := cli.Call(ctxT(t), srv.tr.Local(), "echo", nil); err != nil {
		t.Errorf("call after a cancel: %v", err)
	}
}

// serveTLSMux serves mux on a new TLS transport until the test ends.
func serveTLSMux(t *testing.T, mux *Mux) *TLSTransport {
	t.Helper()
	id, _ := NewIdentity(nil)
	tr, err := NewTLSTransport(TLSConfig{Identity: id, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Serve(ctx, mux) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		tr.Close()
	})
	return tr
}

func TestFramedPeerGoneFailsCalls(t *testing.T) {
	started := make(chan struct{})
	var mux Mux
	mux.Handle("hang", func(ctx context.Context, _ *Request) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	id, _ := NewIdentity(nil)
	srv, err := NewTLSTransport(TLSConfig{Identity: id, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, &mux) }()
	defer srv.Close()
	cli := clientTLS(t, TLSConfig{})
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctxT(t), srv.Local(), "hang", nil)
		errc <- err
	}()
	<-started
	cancel() // the server stops: its connections close
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrUnreachable) {
		t.Errorf("call to a peer that stopped: %v, want ErrUnreachable", err)
	}
	if _, err := cli.Call(ctxT(t), srv.Local(), "hang", nil); !errors.Is(err, ErrUnreachable) {
		t.Errorf("later call: %v, want ErrUnreachable", err)
	}
}

// A small frame sent while a large message is being written goes out
// between its chunks, not after all of it.
func TestFrameWriterInterleavesSmallFrames(t *testing.T) {
	a, b := net.Pipe()
	w := newFrameWriter(a)
	startWriter(t, w)
	type frame struct {
		kind byte
		id   uint64
	}
	got := make(chan []frame, 1)
	firstRead := make(chan struct{})
	smallSent := make(chan struct{})
	var wire bytes.Buffer
	go func() {
		br := bufio.NewReader(io.TeeReader(b, &wire))
		var fs []frame
		var h [frameHeader]byte
		for i := 0; i < 1<<20/bulkChunk+2; i++ {
			if _, err := io.ReadFull(br, h[:]); err != nil {
				got <- fs
				return
			}
			fs = append(fs, frame{h[4], binary.BigEndian.Uint64(h[5:])})
			if _, err := br.Discard(int(binary.BigEndian.Uint32(h[:4]))); err != nil {
				got <- fs
				return
			}
			if i == 0 {
				close(firstRead)
				<-smallSent
			}
		}
		got <- fs
	}()
	bulkSent := make(chan error, 1)
	go func() { bulkSent <- w.send(kindResponse, 1, []byte{0}, make([]byte, 1<<20), true) }()
	<-firstRead
	if err := w.send(kindResponse, 2, []byte{0}, []byte("pong"), false); err != nil {
		t.Fatal(err)
	}
	close(smallSent)
	fs := <-got
	if err := <-bulkSent; err != nil {
		t.Fatal(err)
	}
	last := -1
	for i, f := range fs {
		if f.id == 2 {
			last = i
		}
	}
	if n := len(fs); n != 1<<20/bulkChunk+2 || last < 0 || last >= n-1 {
		t.Fatalf("frames %v: want %d chunks of call 1 with call 2's frame before the last", fs, 1<<20/bulkChunk+1)
	}
	if fs[0].kind != kindResponse|kindMore || fs[len(fs)-1].kind != kindResponse {
		t.Errorf("chunk kinds %v: want the more bit on all but the last", fs)
	}
	// The reader takes the small message whole from between the chunks,
	// then the large one joined.
	fr := frameReader{r: bufio.NewReader(&wire), limit: 2 << 20}
	for _, want := range []struct {
		id   uint64
		size int
	}{{2, 5}, {1, 1<<20 + 1}} {
		kind, id, p, err := fr.next()
		if err != nil || kind != kindResponse || id != want.id || len(p) != want.size {
			t.Fatalf("read kind %d, call %d, %d bytes, err %v; want a response to call %d of %d bytes", kind, id, len(p), err, want.id, want.size)
		}
	}
}

// FuzzFrameReader feeds arbitrary bytes to the frame reader: it must never
// panic, and never return a message over its limit.
func FuzzFrameReader(f *testing.F) {
	var w bytes.Buffer
	fw := newFrameWriter(nopConn{&w})
	fw.send(kindRequest, 7, requestPrefix(1, "echo"), []byte("hello"), false)
	fw.send(kindCancel, 9, nil, nil, true)
	fw.flush()
	// A response of 10 bytes in two chunks (the reader takes chunks of
	// any size; the writer's are bulkChunk, too big for a seed).
	w.Write(appendHeader(nil, kindResponse|kindMore, 8, 4+4))
	w.Write([]byte{0, 0, 0, 10, 200, 1, 'a', 'b'})
	w.Write(appendHeader(nil, kindResponse, 8, 6))
	w.Write([]byte("cdefgh"))
	f.Add(w.Bytes())
	f.Add([]byte{0, 0, 0, 5, 0x81, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 2 * bulkChunk
		fr := frameReader{r: bufio.NewReader(bytes.NewReader(data)), limit: limit}
		for {
			kind, _, p, err := fr.next()
			if err != nil && !errors.Is(err, errFrameTooLarge) {
				return
			}
			if len(p) > limit {
				t.Fatalf("message of %d bytes over the limit %d", len(p), limit)
			}
			if kind == kindRequest && err == nil {
				parseRequest(p) // must not panic
			}
		}
	})
}

// startWriter runs w's writer goroutine until the test ends.
func startWriter(t *testing.T, w *frameWriter) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); w.run(stop) }()
	t.Cleanup(func() { close(stop); w.c.Close(); <-done })
}

// nopConn is a net.Conn that writes to a buffer.
type nopConn struct{ w io.Writer }

func (c nopConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c nopConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c nopConn) Close() error                     { return nil }
func (c nopConn) LocalAddr() net.Addr              { return nil }
func (c nopConn) RemoteAddr() net.Addr             { return nil }
func (c nopConn) SetDeadline(time.Time) error      { return nil }
func (c nopConn) SetReadDeadline(time.Time) error  { return nil }
func (c nopConn) SetWriteDeadline(time.Time) error { return nil }

// gateConn is a net.Conn whose each Write waits to be let through, and
// then copies what it was given into buf.
type gateConn struct {
	nopConn
	entered chan struct{}
	release chan struct{}
	buf     bytes.Buffer
}

func (c *gateConn) Write(b []byte) (int, error) {
	c.entered <- struct{}{}
	<-c.release
	return c.buf.Write(b)
}

// Frames queued while the writer writes must reach the wire whole, even
// when one write was larger than the buffers the writer keeps for reuse:
// a sender must never append into the bytes being written.
func TestFrameWriterKeepsQueuedFramesWhole(t *testing.T) {
	c := &gateConn{entered: make(chan struct{}), release: make(chan struct{})}
	w := newFrameWriter(c)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() { defer close(stopped); w.run(stop) }()
	body := func(id uint64) []byte {
		if id == 0 {
			return bytes.Repeat([]byte{0xee}, 40<<10) // leaves a roomy buffer behind
		}
		return bytes.Repeat([]byte{byte(id)}, 1000)
	}
	send := func(id uint64) {
		if err := w.send(kindResponse, id, nil, body(id), false); err != nil {
			t.Error(err)
		}
	}
	sent0 := make(chan struct{})
	go func() { defer close(sent0); send(0) }() // writes itself: nobody is writing
	var id uint64 = 1
	queue := func(n int) { // while the writer is held in Write
		for range n {
			send(id)
			id++
		}
	}
	<-c.entered // writing frame 0
	queue(300)  // 300 KB: more than the writer keeps for reuse
	c.release <- struct{}{}
	<-c.entered // writing those 300
	queue(1)
	c.release <- struct{}{}
	<-c.entered // writing that one
	queue(1)    // must not land in the bytes being written
	c.release <- struct{}{}
	<-c.entered // writing the last
	c.release <- struct{}{}
	<-sent0 // its sender wrote everything, the writer goroutine nothing
	close(stop)
	<-stopped
	fr := frameReader{r: bufio.NewReader(&c.buf), limit: 1 << 20}
	for want := range id {
		kind, got, p, err := fr.next()
		if err != nil || kind != kindResponse || got != want || !bytes.Equal(p, body(want)) {
			t.Fatalf("frame %d: kind %d, call %d, %d bytes, err %v: corrupt", want, kind, got, len(p), err)
		}
	}
}

// Many senders queue small frames while the writer is stuck on a slow
// reader, enough to pass the spare buffer's size: every frame must still
// arrive whole and in each sender's order.
func TestFrameWriterUnderLoad(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	w := newFrameWriter(a)
	startWriter(t, w)
	const senders, frames = 8, 400
	payload := func(id uint64) []byte {
		p := make([]byte, 1000+int(id%1500))
		for i := range p {
			p[i] = byte(id) + byte(i)
		}
		return p
	}
	errc := make(chan error, 1)
	go func() {
		fr := frameReader{r: bufio.NewReaderSize(b, 4096), limit: 1 << 20}
		next := make([]uint64, senders)
		for n := 0; n < senders*frames; n++ {
			if n%20 == 0 {
				time.Sleep(time.Millisecond) // a slow reader: the queue grows
			}
			kind, id, p, err := fr.next()
			if err != nil {
				errc <- err
				return
			}
			s, seq := id>>32, id&0xffffffff
			if kind != kindResponse || s >= senders || seq != next[s] || !bytes.Equal(p, append([]byte{7}, payload(id)...)) {
				errc <- fmt.Errorf("frame %d: kind %d, sender %d seq %d (want %d), %d bytes: corrupt or out of order", n, kind, s, seq, next[min(s, senders-1)], len(p))
				return
			}
			next[s]++
		}
		errc <- nil
	}()
	var wg sync.WaitGroup
	for s := range uint64(senders) {
		wg.Go(func() {
			for i := range uint64(frames) {
				if i%25 == 0 {
					time.Sleep(500 * time.Microsecond) // keep queuing while the writer writes
				}
				id := s<<32 | i
				if err := w.send(kindResponse, id, []byte{7}, payload(id), false); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A call whose context has already ended sends nothing: the peer does not
// act on a request its caller gave up on (a canceled write stays
// unwritten), and the connection stays good.
func TestCanceledCallSendsNothing(t *testing.T) {
	var calls atomic.Int32
	var mux Mux
	mux.Handle("write", func(context.Context, *Request) ([]byte, error) {
		calls.Add(1)
		return nil, nil
	})
	srv := serveTLSMux(t, &mux)
	cli := clientTLS(t, TLSConfig{})
	if _, err := cli.Call(ctxT(t), srv.Local(), "write", nil); err != nil { // the connection is up
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	for range 200 {
		if _, err := cli.Call(ctx, srv.Local(), "write", []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled call: %v, want context.Canceled", err)
		}
	}
	if _, err := cli.Call(ctxT(t), srv.Local(), "write", nil); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the handler ran %d times, want 2 (the 200 canceled calls not at all)", n)
	}
}
