package sipvm

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/voicering/voicering/store"
)

var (
	// ErrNoAccount means the ring holds no account of that name.
	ErrNoAccount = errors.New("no such account")
	// ErrBadName means a user or domain name cannot be used in a SIP
	// address.
	ErrBadName = errors.New("invalid name")
)

// Credentials are what a registrar needs to check a digest response: the
// HA1 of the account for each algorithm, hex.
type Credentials struct {
	MD5, SHA256 string
}

// HA1 returns H(user:realm:password) in hex for algo "MD5" or "SHA-256".
func HA1(algo, user, realm, password string) string {
	return hexHash(newHash(algo), user+":"+realm+":"+password)
}

func newHash(algo string) hash.Hash {
	if strings.EqualFold(algo, "SHA-256") {
		return sha256.New()
	}
	return md5.New()
}

func hexHash(h hash.Hash, s string) string {
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// Accounts manages the SIP accounts kept on the ring.
type Accounts struct{ rec Records }

// NewAccounts returns Accounts kept in rec.
func NewAccounts(rec Records) *Accounts { return &Accounts{rec: rec} }

// CheckName reports whether s may be a user or domain name: 1 to 64
// letters, digits or ".-_+~", so that it needs no escaping in a SIP URI.
func CheckName(what, s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%w: %s %q: want 1 to 64 characters", ErrBadName, what, s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_+~", r)) {
			return fmt.Errorf("%w: %s %q: %q is not allowed (use letters, digits and .-_+~)", ErrBadName, what, s, r)
		}
	}
	return nil
}

// Add creates or replaces the account user@domain with password. Only
// the digest HA1 values are stored, never the password.
func (a *Accounts) Add(ctx context.Context, user, domain, password string) error {
	if err := CheckName("user", user); err != nil {
		return err
	}
	if err := CheckName("domain", domain); err != nil {
		return err
	}
	if password == "" {
		return fmt.Errorf("%w: empty password for %s", ErrBadName, AOR(user, domain))
	}
	domain = strings.ToLower(domain)
	aor := AOR(user, domain)
	if err := a.rec.Put(ctx, credentialsKey(aor),
		store.Entry{Name: "md5", Value: []byte(HA1("MD5", user, domain, password))},
		store.Entry{Name: "sha-256", Value: []byte(HA1("SHA-256", user, domain, password))},
	); err != nil {
		return fmt.Errorf("sipvm: add account %s: %w", aor, err)
	}
	if err := a.rec.Put(ctx, usersKey(domain), store.Entry{Name: user}); err != nil {
		return fmt.Errorf("sipvm: add account %s to the index of %s: %w", aor, domain, err)
	}
	return nil
}

// Remove deletes the account user@domain and its bindings. It returns an
// error wrapping ErrNoAccount when there is none.
func (a *Accounts) Remove(ctx context.Context, user, domain string) error {
	domain = strings.ToLower(domain)
	aor := AOR(user, domain)
	if _, err := a.Credentials(ctx, user, domain); err != nil {
		return err
	}
	if err := a.rec.Delete(ctx, credentialsKey(aor), "md5", "sha-256"); err != nil {
		return fmt.Errorf("sipvm: remove account %s: %w", aor, err)
	}
	if err := a.rec.Delete(ctx, usersKey(domain), user); err != nil {
		return fmt.Errorf("sipvm: remove account %s from the index of %s: %w", aor, domain, err)
	}
	bs, err := a.rec.Get(ctx, BindingsKey(aor))
	if err == nil && len(bs) > 0 {
		names := make([]string, len(bs))
		for i, b := range bs {
			names[i] = b.Name
		}
		if err := a.rec.Delete(ctx, BindingsKey(aor), names...); err != nil {
			return fmt.Errorf("sipvm: remove the bindings of %s: %w", aor, err)
		}
	}
	return nil
}

// List returns the user names of domain's accounts, sorted.
func (a *Accounts) List(ctx context.Context, domain string) ([]string, error) {
	es, err := a.rec.Get(ctx, usersKey(domain))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sipvm: list the accounts of %s: %w", domain, err)
	}
	users := make([]string, len(es))
	for i, e := range es {
		users[i] = e.Name
	}
	return users, nil
}

// Credentials returns the digest HA1s of user@domain, or an error wrapping
// ErrNoAccount.
func (a *Accounts) Credentials(ctx context.Context, user, domain string) (Credentials, error) {
	aor := AOR(user, strings.ToLower(domain))
	es, err := a.rec.Get(ctx, credentialsKey(aor))
	if errors.Is(err, store.ErrNotFound) {
		return Credentials{}, fmt.Errorf("sipvm: %s: %w", aor, ErrNoAccount)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("sipvm: read the credentials of %s: %w", aor, err)
	}
	var c Credentials
	for _, e := range es {
		switch e.Name {
		case "md5":
			c.MD5 = string(e.Value)
		case "sha-256":
			c.SHA256 = string(e.Value)
		}
	}
	if c.MD5 == "" && c.SHA256 == "" {
		return Credentials{}, fmt.Errorf("sipvm: %s: %w", aor, ErrNoAccount)
	}
	return c, nil
}
