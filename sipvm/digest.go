package sipvm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"
)

// Why a digest check failed; the registrar maps these to 401 or 403.
var (
	errNoCredentials = errors.New("no credentials")
	errStale         = errors.New("stale nonce")
	errBadDigest     = errors.New("wrong credentials")
)

// nonces issues and checks stateless HMAC nonces and tracks nonce counts.
type nonces struct {
	secret []byte
	ttl    time.Duration
	algos  []string
	now    func() time.Time

	mu        sync.Mutex
	seen      map[string]ncState // nonce → highest nc accepted
	lastSweep time.Time
}

type ncState struct {
	nc      uint32
	expires time.Time
}

// maxTracked bounds the nonce-count table; past it, the oldest half of
// the nonces are forgotten early (their UAs get a stale challenge).
const maxTracked = 1 << 20

func newNonces(secret []byte, ttl time.Duration, algos []string, now func() time.Time) *nonces {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	return &nonces{secret: secret, ttl: ttl, algos: algos, now: now, seen: map[string]ncState{}}
}

// issue returns a fresh nonce: 8 bytes of time, 8 random, 16 of MAC.
func (n *nonces) issue() string {
	var b [32]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().UnixNano()))
	rand.Read(b[8:16])
	copy(b[16:], n.mac(b[:16]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (n *nonces) mac(b []byte) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// check reports whether nonce is ours and fresh (errStale when it is ours
// but expired), and whether nc is above every count used with it before
// (errStale too: a replay, or a UA that lost count, gets a new nonce).
func (n *nonces) check(nonce string, nc uint32) error {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 32 || !hmac.Equal(b[16:], n.mac(b[:16])) {
		return fmt.Errorf("%w: nonce was not issued by this peer", errStale)
	}
	now := n.now()
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])))
	if now.Sub(issued) > n.ttl {
		return fmt.Errorf("%w: nonce expired", errStale)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if st, ok := n.seen[nonce]; ok && nc <= st.nc {
		return fmt.Errorf("%w: nonce count %08x already used", errStale, nc)
	}
	n.sweep(now)
	n.seen[nonce] = ncState{nc: nc, expires: issued.Add(n.ttl)}
	return nil
}

// sweep drops expired nonce counts, at most every ttl/4 or when the table
// is full. n.mu is held.
func (n *nonces) sweep(now time.Time) {
	if len(n.seen) < maxTracked && now.Sub(n.lastSweep) < n.ttl/4 {
		return
	}
	n.lastSweep = now
	for k, st := range n.seen {
		if !now.Before(st.expires) {
			delete(n.seen, k)
		}
	}
	if len(n.seen) >= maxTracked { // still full: forget every other nonce
		i := 0
		for k := range n.seen {
			if i%2 == 0 {
				delete(n.seen, k)
			}
			i++
		}
	}
}

// challenges returns the WWW-Authenticate values for realm, one per
// algorithm offered, most preferred first (RFC 8760 §2.4).
func (n *nonces) challenges(realm string, stale bool) []string {
	nonce := n.issue()
	var out []string
	for _, algo := range n.algos {
		s := fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=%s, qop="auth"`, realm, nonce, algo)
		if stale {
			s += ", stale=true"
		}
		out = append(out, s)
	}
	return out
}

// parseAuthorization parses an Authorization header value for realm and
// checks what can be checked without the account: scheme, realm, nonce,
// qop and algorithm.
func (n *nonces) parseAuthorization(value, realm string) (*digest.Credentials, error) {
	if value == "" {
		return nil, errNoCredentials
	}
	c, err := parseCredentials(value)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadDigest, err)
	}
	if !strings.EqualFold(c.Realm, realm) {
		return nil, fmt.Errorf("%w: realm %q, want %q", errNoCredentials, c.Realm, realm)
	}
	algo := strings.ToUpper(c.Algorithm)
	if algo == "" {
		algo = "MD5"
	}
	if !slices.Contains(n.algos, algo) {
		return nil, fmt.Errorf("%w: algorithm %q is not offered", errNoCredentials, c.Algorithm)
	}
	if c.QOP != "auth" {
		return nil, fmt.Errorf("%w: qop %q, want auth", errBadDigest, c.QOP)
	}
	if c.Username == "" || c.Response == "" || c.Cnonce == "" {
		return nil, fmt.Errorf("%w: incomplete credentials", errBadDigest)
	}
	if c.Nc <= 0 {
		return nil, fmt.Errorf("%w: nonce count %d", errBadDigest, c.Nc)
	}
	return c, nil
}

// verify checks c's response for method against the account's HA1s, then
// the nonce and its count (so that a wrong password does not use up a
// count).
func (n *nonces) verify(c *digest.Credentials, method string, cr Credentials) error {
	algo := strings.ToUpper(c.Algorithm)
	if algo == "" {
		algo = "MD5"
	}
	ha1 := cr.MD5
	if algo == "SHA-256" {
		ha1 = cr.SHA256
	}
	if ha1 == "" {
		return fmt.Errorf("%w: no %s credentials stored for this account", errBadDigest, algo)
	}
	ha2 := hexHash(newHash(algo), method+":"+c.URI)
	want := hexHash(newHash(algo), fmt.Sprintf("%s:%s:%08x:%s:%s:%s", ha1, c.Nonce, c.Nc, c.Cnonce, c.QOP, ha2))
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(c.Response)), []byte(want)) != 1 {
		return errBadDigest
	}
	return n.check(c.Nonce, uint32(c.Nc))
}
