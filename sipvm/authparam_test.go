package sipvm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

func TestParseCredentials(t *testing.T) {
	sipp := `Digest username="u7",realm="bench.test",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:26000",nonce="AAAB",response="1f0e",algorithm=MD5`
	tests := []struct {
		name    string
		value   string
		want    *digest.Credentials
		wantErr string
	}{
		{"sipp", sipp, &digest.Credentials{Username: "u7", Realm: "bench.test", Cnonce: "6b8b4567", Nc: 1, QOP: "auth", URI: "sip:127.0.0.1:26000", Nonce: "AAAB", Response: "1f0e", Algorithm: "MD5"}, ""},
		{"spaces and case", `digest  Username = "a" ,REALM="r", nc=0000000a , opaque="", userhash=TRUE`, &digest.Credentials{Username: "a", Realm: "r", Nc: 10, Userhash: true}, ""},
		{"escapes", `Digest username="a\"b\\c", realm="r"`, &digest.Credentials{Username: `a"b\c`, Realm: "r"}, ""},
		{"unknown parameter", `Digest username="a", x-extra=1, realm="r"`, &digest.Credentials{Username: "a", Realm: "r"}, ""},
		{"other scheme", `Basic YWxpY2U6c2VjcmV0`, nil, "not Digest"},
		{"no value", `Digest username`, nil, "has no value"},
		{"empty value", `Digest username=, realm="r"`, nil, "empty value"},
		{"unterminated", `Digest username="alice`, nil, "unterminated"},
		{"no comma", `Digest username="a" realm="r"`, nil, "expected a comma"},
		{"bad nc", `Digest nc=zz`, nil, "nonce count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCredentials(tt.value)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseCredentials(%q) = %+v, %v; want an error saying %q", tt.value, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseCredentials(%q) = %+v, %v; want %+v", tt.value, got, err, tt.want)
			}
		})
	}
}

// FuzzParseCredentials formats credentials with icholy/digest and checks
// that parseCredentials reads back what was formatted, and what that
// package's own parser reads.
func FuzzParseCredentials(f *testing.F) {
	f.Add("alice", "example.com", "nonce", "sip:example.com", "abcdef", "MD5", "cn", "auth", "op", 1)
	f.Add(`a"b\c`, "", "", "", "", "", "", "", "", 0x7fffffff)
	f.Fuzz(func(t *testing.T, user, realm, nonce, uri, response, algo, cnonce, qop, opaque string, nc int) {
		for _, s := range []string{user, realm, nonce, uri, response, algo, cnonce, qop, opaque} {
			for i := range len(s) {
				if s[i] < 0x20 || s[i] >= 0x7f { // strconv.Quote writes these as Go escapes, not RFC quoted-pairs
					return
				}
			}
		}
		for _, s := range []string{algo, qop} { // written unquoted: must be tokens
			for i := range len(s) {
				if !isToken(s[i]) {
					return
				}
			}
		}
		if nc < 0 {
			nc = -nc
		}
		nc &= 0x7fffffff
		c := &digest.Credentials{Username: user, Realm: realm, Nonce: nonce, URI: uri, Response: response,
			Algorithm: algo, Cnonce: cnonce, QOP: qop, Opaque: opaque, Nc: nc}
		if qop == "" {
			c.Cnonce, c.Nc = "", 0 // not written without qop
		}
		s := c.String()
		got, err := parseCredentials(s)
		if err != nil {
			t.Fatalf("parseCredentials(%q): %v", s, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("parseCredentials(%q) = %+v, want %+v", s, got, c)
		}
		if theirs, err := digest.ParseCredentials(s); err == nil && !reflect.DeepEqual(got, theirs) {
			t.Fatalf("parseCredentials(%q) = %+v, icholy/digest reads %+v", s, got, theirs)
		}
	})
}

// TestNonceCounts checks the nonce-count table: each count is accepted
// once and only above the last, a nonce is stale once window newer ones
// were issued (its slot given to another), and the indices wrap around
// 2^32 without losing track.
func TestNonceCounts(t *testing.T) {
	n := newNonces([]byte("k"), time.Minute, []string{"MD5"}, time.Now)
	n.window = 8
	n.issued.Store(1<<32 - 3) // wraps after three nonces
	a := n.issue()
	for _, step := range []struct {
		nc uint32
		ok bool
	}{{1, true}, {1, false}, {3, true}, {2, false}, {4, true}} {
		if err := n.check(a, step.nc); (err == nil) != step.ok {
			t.Fatalf("count %d: %v, want accepted %v", step.nc, err, step.ok)
		}
	}
	var newer []string
	for range 7 {
		newer = append(newer, n.issue())
	}
	if err := n.check(a, 5); err != nil {
		t.Fatalf("after 7 newer nonces of 8 tracked: %v", err)
	}
	b := n.issue() // takes a's slot
	if err := n.check(a, 6); !errors.Is(err, errStale) {
		t.Fatalf("a nonce whose slot was given to another: %v, want stale", err)
	}
	if err := n.check(b, 1); err != nil {
		t.Fatalf("the nonce given the slot: %v", err)
	}
	for i, c := range newer {
		if err := n.check(c, 1); err != nil {
			t.Fatalf("nonce %d of 7: %v", i, err)
		}
	}
	old := newNonces([]byte("k"), time.Minute, []string{"MD5"}, func() time.Time { return time.Now().Add(-2 * time.Minute) }).issue()
	if err := n.check(old, 1); !errors.Is(err, errStale) {
		t.Fatalf("an expired nonce: %v, want stale", err)
	}
	// Peers given the same secret accept each other's nonces, each
	// count once; a nonce under another secret is not ours.
	peer := newNonces([]byte("k"), time.Minute, []string{"MD5"}, time.Now).issue()
	if err := n.check(peer, 1); err != nil {
		t.Fatalf("a nonce of a peer sharing the secret: %v", err)
	}
	if err := n.check(peer, 1); !errors.Is(err, errStale) {
		t.Fatalf("its count again: %v, want stale", err)
	}
	if err := n.check(newNonces([]byte("other"), time.Minute, []string{"MD5"}, time.Now).issue(), 1); !errors.Is(err, errStale) {
		t.Fatalf("a nonce under another secret: %v, want stale", err)
	}
}
