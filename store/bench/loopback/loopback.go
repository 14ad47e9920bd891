// Package loopback measures the baseline of every transport figure: how
// fast this machine copies bytes over one raw TLS 1.3 connection on
// 127.0.0.1. voicering bench and the store benchmarks report their
// throughput as a ratio against it, measured in the same run.
package loopback

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"
)

// TLS copies n bytes over one TLS 1.3 connection on 127.0.0.1, server to
// client, and returns how long it took from dialling to the last byte
// read: the most any loopback transport can deliver on this machine.
func TLS(ctx context.Context, n int64) (time.Duration, error) {
	cert, err := selfSigned()
	if err != nil {
		return 0, fmt.Errorf("loopback TLS: %w", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		return 0, fmt.Errorf("loopback TLS: listen: %w", err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	serveErr := make(chan error, 1)
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			serveErr <- err
			return
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		buf := make([]byte, 256<<10)
		rand.Read(buf)
		left := n
		for left > 0 {
			k, err := c.Write(buf[:min(int64(len(buf)), left)])
			if err != nil {
				serveErr <- err
				return
			}
			left -= int64(k)
		}
		serveErr <- nil
	})
	start := time.Now()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}} // throughput only: nothing to trust
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return 0, fmt.Errorf("loopback TLS: dial: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	got, err := io.Copy(io.Discard, io.LimitReader(c, n))
	took := time.Since(start)
	if err != nil || got != n {
		return 0, fmt.Errorf("loopback TLS: read %d of %d bytes: %v", got, n, err)
	}
	if err := <-serveErr; err != nil {
		return 0, fmt.Errorf("loopback TLS: write: %w", err)
	}
	return took, nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "voicering bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
