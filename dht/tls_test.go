package dht

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// served is a TLS transport serving a mux whose "echo" method answers the
// caller's ID, the request's version and body.
type served struct {
	tr    *TLSTransport
	calls atomic.Int64
}

func serveTLS(t testing.TB, cfg TLSConfig) *served {
	t.Helper()
	if cfg.Identity == nil {
		cfg.Identity, _ = NewIdentity(nil)
	}
	cfg.Addr = "127.0.0.1:0"
	tr, err := NewTLSTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &served{tr: tr}
	var mux Mux
	mux.Handle("echo", func(_ context.Context, req *Request) ([]byte, error) {
		s.calls.Add(1)
		out := append(req.From[:], byte(req.Version))
		return append(out, req.Body...), nil
	})
	mux.Handle("fail", func(context.Context, *Request) ([]byte, error) {
		return nil, errors.Join(ErrBadRequest, errors.New("no good"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := tr.Serve(ctx, &mux); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); tr.Close() })
	return s
}

func clientTLS(t testing.TB, cfg TLSConfig) *TLSTransport {
	t.Helper()
	if cfg.Identity == nil {
		cfg.Identity, _ = NewIdentity(nil)
	}
	tr, err := NewTLSTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTLSCallAuthenticatesBothEnds(t *testing.T) {
	srv := serveTLS(t, TLSConfig{})
	cli := clientTLS(t, TLSConfig{})
	tests := []struct {
		name    string
		to      Peer
		wantErr error
	}{
		{"expected id", srv.tr.Local(), nil},
		{"any id at a bootstrap address", Peer{Addr: srv.tr.Local().Addr}, nil},
		{"another node's id", Peer{ID: Key("someone else"), Addr: srv.tr.Local().Addr}, ErrPeerID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cli.Call(ctxT(t), tt.to, "echo", []byte("hi"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			me := cli.Local().ID
			want := append(me[:], 1, 'h', 'i')
			if !bytes.Equal(got, want) {
				t.Errorf("echo = %x, want %x (caller ID, version 1, body)", got, want)
			}
		})
	}
	if got := cli.Meter().Total(); got.Calls == 0 || got.Sent == 0 || got.Received == 0 {
		t.Errorf("client meter = %+v, want calls and bytes counted", got)
	}
	if got := srv.tr.Meter().PerPeer()[cli.Local().ID]; got.Calls == 0 {
		t.Errorf("server meter for the client = %+v, want calls counted", got)
	}
}

// lyingIdentity returns an identity whose self-signed certificate names
// the node ID claim, not its key's.
func lyingIdentity(t *testing.T, claim ID) *Identity {
	t.Helper()
	id, _ := NewIdentity(nil)
	der, err := x509.CreateCertificate(rand.Reader, peerTemplate(claim, time.Hour), peerTemplate(claim, time.Hour), id.PublicKey(), id.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := id.SetCertificate(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTLSSpoofedIDRefused(t *testing.T) {
	victim, _ := NewIdentity(nil)
	t.Run("caller claims another id", func(t *testing.T) {
		srv := serveTLS(t, TLSConfig{})
		cli := clientTLS(t, TLSConfig{Identity: lyingIdentity(t, victim.ID())})
		_, err := cli.Call(ctxT(t), srv.tr.Local(), "echo", nil)
		if !errors.Is(err, ErrNotAdmitted) {
			t.Errorf("err = %v, want ErrNotAdmitted", err)
		}
		if got := srv.calls.Load(); got != 0 {
			t.Errorf("handler ran %d times, want 0", got)
		}
	})
	t.Run("server claims another id", func(t *testing.T) {
		srv := serveTLS(t, TLSConfig{Identity: lyingIdentity(t, victim.ID())})
		cli := clientTLS(t, TLSConfig{})
		_, err := cli.Call(ctxT(t), Peer{ID: victim.ID(), Addr: srv.tr.Local().Addr}, "echo", nil)
		if !errors.Is(err, ErrPeerID) {
			t.Errorf("err = %v, want ErrPeerID", err)
		}
	})
}

func TestTLSClosedRing(t *testing.T) {
	ca, err := NewCA("ring", 0)
	if err != nil {
		t.Fatal(err)
	}
	certified := func() *Identity {
		id, _ := NewIdentity(nil)
		p, err := ca.Issue(id.PublicKey(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := id.SetCertificate(p); err != nil {
			t.Fatal(err)
		}
		return id
	}
	otherCA, _ := NewCA("other ring", 0)
	foreign, _ := NewIdentity(nil)
	p, _ := otherCA.Issue(foreign.PublicKey(), 0)
	foreign.SetCertificate(p)

	member := serveTLS(t, TLSConfig{Identity: certified(), CA: ca.Cert})
	outsider := serveTLS(t, TLSConfig{}) // open-ring peer, self-signed
	tests := []struct {
		name    string
		cli     TLSConfig
		to      Peer
		wantErr error
	}{
		{"certified peer admitted", TLSConfig{Identity: certified(), CA: ca.Cert}, member.tr.Local(), nil},
		{"uncertified peer refused", TLSConfig{}, member.tr.Local(), ErrNotAdmitted},
		{"other ring's peer refused", TLSConfig{Identity: foreign, CA: otherCA.Cert}, member.tr.Local(), ErrNotAdmitted},
		{"member refuses an uncertified server", TLSConfig{Identity: certified(), CA: ca.Cert}, outsider.tr.Local(), ErrNotAdmitted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := member.calls.Load()
			_, err := clientTLS(t, tt.cli).Call(ctxT(t), tt.to, "echo", nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && member.calls.Load() != before {
				t.Error("refused caller's request reached the handler")
			}
		})
	}
}

func TestTLSVersionSkew(t *testing.T) {
	tests := []struct {
		name        string
		client      []int
		server      []int
		wantVersion byte
		wantErr     error
	}{
		{"same version", []int{1}, []int{1}, 1, nil},
		{"v2 that speaks v1 calls v1", []int{2, 1}, []int{1}, 1, nil},
		{"v1 calls v2 that speaks v1", []int{1}, []int{2, 1}, 1, nil},
		{"both v2", []int{1, 2}, []int{2, 1}, 2, nil},
		{"v2 only calls v1 only", []int{2}, []int{1}, 0, ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serveTLS(t, TLSConfig{Versions: tt.server})
			cli := clientTLS(t, TLSConfig{Versions: tt.client})
			for range 2 { // the second call uses the remembered version
				got, err := cli.Call(ctxT(t), srv.tr.Local(), "echo", nil)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err == nil && got[IDSize] != tt.wantVersion {
					t.Errorf("served version = %d, want %d", got[IDSize], tt.wantVersion)
				}
			}
		})
	}
}

func TestTLSBadRequests(t *testing.T) {
	srv := serveTLS(t, TLSConfig{MaxMessage: 1024})
	cli := clientTLS(t, TLSConfig{})
	tests := []struct {
		name    string
		method  string
		body    []byte
		wantErr error
	}{
		{"unknown method", "nope", nil, ErrUnknownMethod},
		{"handler says bad request", "fail", nil, ErrBadRequest},
		{"body over the limit", "echo", make([]byte, 2048), ErrTooLarge},
		{"body at the limit", "echo", make([]byte, 1024-IDSize-1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cli.Call(ctxT(t), srv.tr.Local(), tt.method, tt.body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var re *RemoteError
			if tt.wantErr != nil && !errors.As(err, &re) {
				t.Errorf("err = %v, want a *RemoteError", err)
			}
		})
	}

	// A raw HTTP/2 request without a version header gets 505 and the list
	// of versions served.
	id, _ := NewIdentity(nil)
	cert, _ := id.tlsCertificate()
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"h2"}}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, "https://"+srv.tr.Local().Addr+"/rpc/echo", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != statusVersion || resp.Header.Get(headerVersions) != "1" {
		t.Errorf("no version: status %d, versions %q; want %d, \"1\"", resp.StatusCode, resp.Header.Get(headerVersions), statusVersion)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol = %s, want HTTP/2", resp.Proto)
	}
}
