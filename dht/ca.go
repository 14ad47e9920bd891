package dht

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names of a ring CA's directory.
const (
	CACertFile = "ca.crt" // the CA certificate every peer of a closed ring is configured with
	CAKeyFile  = "ca.key" // the CA's private key, mode 0600; keep it off the peers
)

// CA is the certificate authority of a closed ring: only peers holding a
// certificate it issued are admitted, which keeps an attacker from
// flooding the ring with node IDs of its choosing (a Sybil attack).
type CA struct {
	Cert *x509.Certificate
	key  ed25519.PrivateKey
}

// NewCA creates a CA named name with a fresh Ed25519 key, valid for
// validity (0 = 20 years).
func NewCA(name string, validity time.Duration) (*CA, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dht: generate ca key: %w", err)
	}
	if validity == 0 {
		validity = 20 * 365 * 24 * time.Hour
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"voicering ring CA"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("dht: create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("dht: parse ca certificate: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// CreateCA creates a CA and writes it to dir as CACertFile and CAKeyFile
// (0600). It refuses to overwrite an existing CA.
func CreateCA(dir, name string) (*CA, error) {
	ca, err := NewCA(name, 0)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("dht: encode ca key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dht: create ca directory: %w", err)
	}
	if err := writeNew(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("dht: create %s: %w", path, err)
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("dht: write %s: %w", path, werr)
	}
	return nil
}

// LoadCA reads a CA written by CreateCA from dir.
func LoadCA(dir string) (*CA, error) {
	cert, err := ReadCACert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	kpath := filepath.Join(dir, CAKeyFile)
	b, err := os.ReadFile(kpath)
	if err != nil {
		return nil, fmt.Errorf("dht: read ca key: %w", err)
	}
	key, err := parseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("dht: ca key file %s is corrupt: %w", kpath, err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(cert.PublicKey) {
		return nil, fmt.Errorf("dht: ca key file %s does not match %s", kpath, CACertFile)
	}
	return &CA{Cert: cert, key: key}, nil
}

// ReadCACert reads a ring CA certificate (PEM), as peers of a closed ring
// are configured with.
func ReadCACert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dht: read ca certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("dht: ca certificate file %s is corrupt: no PEM \"CERTIFICATE\" block", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dht: ca certificate file %s is corrupt: %w", path, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("dht: %s is not a CA certificate", path)
	}
	return cert, nil
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Issue returns a certificate (PEM) binding pub, and so the node ID
// IDOf(pub), to this ring, valid for validity (0 = 1 year). The peer keeps
// it as CertFile in its data directory; clients of a closed ring get one
// the same way.
func (ca *CA) Issue(pub ed25519.PublicKey, validity time.Duration) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("dht: issue certificate: not an Ed25519 public key")
	}
	if validity == 0 {
		validity = 365 * 24 * time.Hour
	}
	der, err := x509.CreateCertificate(rand.Reader, peerTemplate(IDOf(pub), validity), ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("dht: issue certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
