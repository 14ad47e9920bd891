package dht

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "peer")
	a, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	b, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != b.ID() {
		t.Errorf("reloaded ID = %s, want %s", b.ID(), a.ID())
	}
	if got, want := a.ID(), IDOf(a.PublicKey()); got != want {
		t.Errorf("ID = %s, want SHA-256 of the key %s", got, want)
	}

	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadIdentity(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, KeyFile)) {
		t.Errorf("corrupt key: err = %v, want an error naming the file", err)
	}
}

func TestCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := CreateCA(dir, "test ring")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateCA(dir, "again"); err == nil {
		t.Error("CreateCA over an existing CA succeeded, want error")
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Error("LoadCA returned a different certificate")
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca key mode = %v (err %v), want 0600", fi.Mode().Perm(), err)
	}

	peerDir := t.TempDir()
	peer, err := LoadIdentity(peerDir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := loaded.Issue(peer.PublicKey(), 0)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewIdentity(nil)
	if err := other.SetCertificate(certPEM); err == nil {
		t.Error("SetCertificate with another key's certificate succeeded, want error")
	}
	if err := os.WriteFile(filepath.Join(peerDir, CertFile), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := LoadIdentity(peerDir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := verifyPeer(again.cert, ca.Cert)
	if err != nil {
		t.Fatalf("issued certificate refused: %v", err)
	}
	if id != peer.ID() {
		t.Errorf("verified ID = %s, want %s", id, peer.ID())
	}
}
