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
	"hash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
//
// Each nonce carries the issuer's id and its index among the nonces the
// issuer made. The highest count used with one of this peer's own nonces
// sits in a slot of a fixed table at that index (as Kamailio's auth
// module keeps them): checking takes a few atomic loads and a
// compare-and-swap, with no lock and no map to sweep. The table remembers
// the last maxTracked nonces issued; an older one is answered stale, and
// its UA authenticates anew. Nonces of other peers sharing the secret
// (Config.NonceSecret) have their counts in a map, swept as they expire.
type nonces struct {
	secret []byte
	ttl    time.Duration
	algos  []string
	now    func() time.Time

	macs sync.Pool // of HMAC-SHA256 with secret: a new one costs two hashes

	id     uint32        // the issuer id in this peer's nonces, random
	issued atomic.Uint32 // index of the next nonce; starts anywhere
	window uint32        // slots: maxTracked
	slots  struct {
		once sync.Once
		nc   []atomic.Uint32 // highest count used with nonce i, at i % window
	}

	mu        sync.Mutex
	foreign   map[string]ncState // other peers' nonce → highest nc accepted
	lastSweep time.Time
}

type ncState struct {
	nc      uint32
	expires time.Time
}

// maxTracked is how many of the latest nonces have their counts tracked
// (4 MiB of slots, allocated with the first nonce), and how many of other
// peers' nonces at most.
const maxTracked = 1 << 20

func newNonces(secret []byte, ttl time.Duration, algos []string, now func() time.Time) *nonces {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	n := &nonces{secret: secret, ttl: ttl, algos: algos, now: now, window: maxTracked, foreign: map[string]ncState{}}
	// A new id per start: a nonce from before a restart with the same
	// secret counts as another peer's, tracked in the map.
	var r [8]byte
	rand.Read(r[:])
	n.id = binary.BigEndian.Uint32(r[:4])
	n.issued.Store(binary.BigEndian.Uint32(r[4:]))
	return n
}

func (n *nonces) table() []atomic.Uint32 {
	n.slots.once.Do(func() { n.slots.nc = make([]atomic.Uint32, n.window) })
	return n.slots.nc
}

// issue returns a fresh nonce: 8 bytes of time, 4 of index, 4 of issuer
// id, 16 of MAC.
func (n *nonces) issue() string {
	i := n.issued.Add(1) - 1
	n.table()[i%n.window].Store(0)
	var b [32]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().UnixNano()))
	binary.BigEndian.PutUint32(b[8:12], i)
	binary.BigEndian.PutUint32(b[12:16], n.id)
	copy(b[16:], n.mac(b[:16]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (n *nonces) mac(b []byte) []byte {
	m, _ := n.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, n.secret)
	}
	defer n.macs.Put(m)
	m.Reset()
	m.Write(b)
	return m.Sum(make([]byte, 0, sha256.Size))[:16]
}

// check reports whether nonce was issued under our secret and is fresh
// (errStale when it is expired or forgotten), and whether nc is above
// every count used with it before (errStale too: a replay, or a UA that
// lost count, gets a new nonce).
func (n *nonces) check(nonce string, nc uint32) error {
	var b [32]byte
	if len(nonce) != base64.RawURLEncoding.EncodedLen(len(b)) {
		return fmt.Errorf("%w: nonce was not issued by this peer", errStale)
	}
	if _, err := base64.RawURLEncoding.Decode(b[:], []byte(nonce)); err != nil || !hmac.Equal(b[16:], n.mac(b[:16])) {
		return fmt.Errorf("%w: nonce was not issued by this peer", errStale)
	}
	now := n.now()
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])))
	if now.Sub(issued) > n.ttl {
		return fmt.Errorf("%w: nonce expired", errStale)
	}
	if binary.BigEndian.Uint32(b[12:16]) != n.id {
		return n.checkForeign(string(b[:16]), nc, issued.Add(n.ttl), now)
	}
	i := binary.BigEndian.Uint32(b[8:12])
	forgotten := func() bool { return n.issued.Load()-1-i >= n.window }
	if forgotten() {
		return fmt.Errorf("%w: nonce too old to track", errStale)
	}
	slot := &n.table()[i%n.window]
	for {
		old := slot.Load()
		if nc <= old {
			return fmt.Errorf("%w: nonce count %08x already used", errStale, nc)
		}
		if slot.CompareAndSwap(old, nc) {
			break
		}
	}
	// The slot may have been given to a newer nonce meanwhile (and the
	// count just stored in its place): then this one is forgotten, and
	// the newer one's next count gets a stale answer, which is safe.
	if forgotten() {
		return fmt.Errorf("%w: nonce too old to track", errStale)
	}
	return nil
}

// checkForeign tracks the counts of a nonce another peer issued under
// the same secret, keyed by its MACed bytes k, until it expires.
func (n *nonces) checkForeign(k string, nc uint32, expires, now time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st, ok := n.foreign[k]; ok && nc <= st.nc {
		return fmt.Errorf("%w: nonce count %08x already used", errStale, nc)
	}
	n.sweep(now)
	n.foreign[k] = ncState{nc: nc, expires: expires}
	return nil
}

// sweep drops expired foreign nonce counts, at most every ttl/4 or when
// the map is full. n.mu is held.
func (n *nonces) sweep(now time.Time) {
	if len(n.foreign) < maxTracked && now.Sub(n.lastSweep) < n.ttl/4 {
		return
	}
	n.lastSweep = now
	for k, st := range n.foreign {
		if !now.Before(st.expires) {
			delete(n.foreign, k)
		}
	}
	if len(n.foreign) >= maxTracked { // still full: forget every other nonce
		i := 0
		for k := range n.foreign {
			if i%2 == 0 {
				delete(n.foreign, k)
			}
			i++
		}
	}
}

// challenges returns the WWW-Authenticate header lines for realm, one
// per algorithm offered, most preferred first (RFC 8760 §2.4).
func (n *nonces) challenges(realm string, stale bool) []string {
	nonce := n.issue()
	out := make([]string, len(n.algos))
	for i, algo := range n.algos {
		out[i] = `WWW-Authenticate: Digest realm="` + realm + `", nonce="` + nonce + `", algorithm=` + algo + `, qop="auth"`
		if stale {
			out[i] += ", stale=true"
		}
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
