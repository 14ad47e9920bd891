package dht

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names inside a peer's data directory.
const (
	// KeyFile holds the peer's Ed25519 private key (PKCS #8, PEM), mode 0600.
	KeyFile = "node.key"
	// CertFile, when present, holds the peer's certificate issued by the
	// ring CA (PEM). Without it the peer presents a self-signed
	// certificate, which only open rings accept.
	CertFile = "node.crt"
)

// Identity is a peer's (or a client's) Ed25519 key and the certificate it
// presents in TLS handshakes.
type Identity struct {
	key  ed25519.PrivateKey
	cert [][]byte // DER chain, leaf first; nil = self-signed on demand
}

// NewIdentity returns a fresh identity with a key read from r (nil =
// crypto/rand). Clients of an open ring use one per process.
func NewIdentity(r io.Reader) (*Identity, error) {
	if r == nil {
		r = rand.Reader
	}
	_, key, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("dht: generate key: %w", err)
	}
	return &Identity{key: key}, nil
}

// LoadIdentity reads the identity kept in dir: the key in KeyFile, created
// with mode 0600 on first use and reused afterwards, and the CA-issued
// certificate in CertFile if there is one. A corrupt key or certificate
// file is an error naming the file.
func LoadIdentity(dir string) (*Identity, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	var id *Identity
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if id, err = NewIdentity(nil); err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(id.key)
		if err != nil {
			return nil, fmt.Errorf("dht: encode key: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("dht: create data directory: %w", err)
		}
		p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("dht: create key file: %w", err)
		}
		_, werr := f.Write(p)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("dht: write key file %s: %w", path, werr)
		}
	case err != nil:
		return nil, fmt.Errorf("dht: read key file: %w", err)
	default:
		key, err := parseKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("dht: key file %s is corrupt (move it away to create a new identity): %w", path, err)
		}
		id = &Identity{key: key}
	}
	cpath := filepath.Join(dir, CertFile)
	cb, err := os.ReadFile(cpath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("dht: read certificate file: %w", err)
	default:
		if err := id.SetCertificate(cb); err != nil {
			return nil, fmt.Errorf("dht: certificate file %s: %w", cpath, err)
		}
	}
	return id, nil
}

func parseKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want Ed25519", k)
	}
	return key, nil
}

// ID returns the node ID bound to the identity's key.
func (i *Identity) ID() ID { return IDOf(i.PublicKey()) }

// PublicKey returns the identity's public key.
func (i *Identity) PublicKey() ed25519.PublicKey { return i.key.Public().(ed25519.PublicKey) }

// SetCertificate makes the identity present certPEM (a certificate chain,
// leaf first, as issued by CA.Issue) instead of a self-signed certificate.
// The leaf must carry the identity's public key.
func (i *Identity) SetCertificate(certPEM []byte) error {
	var chain [][]byte
	for rest := certPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain = append(chain, blk.Bytes)
		}
	}
	if len(chain) == 0 {
		return errors.New("no PEM \"CERTIFICATE\" block")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return err
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(i.PublicKey()) {
		return errors.New("certificate is not for this peer's key")
	}
	i.cert = chain
	return nil
}

// tlsCertificate returns the certificate to present: the CA-issued chain
// if set, else a fresh self-signed one.
func (i *Identity) tlsCertificate() (tls.Certificate, error) {
	chain := i.cert
	if chain == nil {
		der, err := x509.CreateCertificate(rand.Reader, peerTemplate(i.ID(), 10*365*24*time.Hour), peerTemplate(i.ID(), 0), i.PublicKey(), i.key)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("dht: self-sign certificate: %w", err)
		}
		chain = [][]byte{der}
	}
	return tls.Certificate{Certificate: chain, PrivateKey: i.key}, nil
}

// peerTemplate is the certificate template of a peer: its node ID in the
// subject common name (checked against the key), usable on both ends of
// a TLS connection.
func peerTemplate(id ID, validity time.Duration) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	if validity == 0 {
		validity = 10 * 365 * 24 * time.Hour
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
}

// verifyPeer checks the certificate chain a peer presented and returns the
// node ID it authenticates. TLS 1.3 has already proved possession of the
// leaf's key. The leaf must hold an Ed25519 key; if its common name names
// a node ID it must be the key's (ErrPeerID otherwise); in a closed ring
// (ca != nil) the chain must lead to the ring CA (ErrNotAdmitted).
func verifyPeer(raw [][]byte, ca *x509.Certificate) (ID, error) {
	if len(raw) == 0 {
		return ID{}, fmt.Errorf("%w: no certificate", ErrNotAdmitted)
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return ID{}, fmt.Errorf("%w: parse certificate: %v", ErrNotAdmitted, err)
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return ID{}, fmt.Errorf("%w: certificate key is %T, want Ed25519", ErrNotAdmitted, leaf.PublicKey)
	}
	id := IDOf(pub)
	if cn := leaf.Subject.CommonName; cn != "" && cn != id.String() {
		return ID{}, fmt.Errorf("%w: certificate claims node %.16s but its key is node %s", ErrPeerID, cn, id.Short())
	}
	if ca != nil {
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		inter := x509.NewCertPool()
		for _, r := range raw[1:] {
			if c, err := x509.ParseCertificate(r); err == nil {
				inter.AddCert(c)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return ID{}, fmt.Errorf("%w: node %s: %v", ErrNotAdmitted, id.Short(), err)
		}
	}
	return id, nil
}
