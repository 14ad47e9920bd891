package coding

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
)

// KeySize is the size in bytes of an object Key.
const KeySize = 32

// Key is an object's AES-256 encryption key. Every object gets a fresh random
// one; it never leaves the cap.
type Key [KeySize]byte

// NewKey returns a random key read from r, or from crypto/rand when r is nil.
func NewKey(r io.Reader) (Key, error) {
	if r == nil {
		r = rand.Reader
	}
	var k Key
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return Key{}, fmt.Errorf("coding: new key: %w", err)
	}
	return k, nil
}

// storageIndexTag separates the storage-index derivation from any other use
// of SHA-256 over a key.
const storageIndexTag = "voicering/storage-index/v1\x00"

// StorageIndex derives where the object lives on the ring. The derivation is
// one-way: knowing the index does not reveal the key.
func (k Key) StorageIndex() StorageIndex {
	h := sha256.New()
	h.Write([]byte(storageIndexTag))
	h.Write(k[:])
	var si StorageIndex
	h.Sum(si[:0])
	return si
}

// CapPrefix starts every cap string of this format version.
const CapPrefix = "vr1:"

// capEncoding is lower-case RFC 4648 base32 without padding: safe in shells,
// URLs and file names, and case-insensitive when parsed.
var capEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrBadCap is wrapped by every error about a malformed cap string.
var ErrBadCap = errors.New("malformed cap")

// Cap is what lets its holder read one object: the object's key and the hash
// of its manifest. Whoever holds a cap can find the object (the storage index
// derives from the key), check the manifest a peer returns against the hash,
// check every shard against the manifest, and decrypt.
type Cap struct {
	Key      Key
	Manifest Hash
}

// StorageIndex returns where the object named by c lives on the ring.
func (c Cap) StorageIndex() StorageIndex { return c.Key.StorageIndex() }

// String returns the printable form "vr1:" + base32(key ‖ manifest hash).
func (c Cap) String() string {
	var b [KeySize + HashSize]byte
	copy(b[:], c.Key[:])
	copy(b[KeySize:], c.Manifest[:])
	return CapPrefix + capEncoding.EncodeToString(b[:])
}

// capLen is the length of a cap string.
var capLen = len(CapPrefix) + capEncoding.EncodedLen(KeySize+HashSize)

// ParseCap parses the output of Cap.String. Surrounding white space (a
// trailing newline from a shell) is ignored; case is not significant.
func ParseCap(s string) (Cap, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if !strings.HasPrefix(s, CapPrefix) {
		return Cap{}, fmt.Errorf("coding: parse cap: %w: it must start with %q (is this the output of voicering put?)", ErrBadCap, CapPrefix)
	}
	if len(s) != capLen {
		return Cap{}, fmt.Errorf("coding: parse cap: %w: %d characters, want %d (was it cut when copied?)", ErrBadCap, len(s), capLen)
	}
	b, err := capEncoding.DecodeString(s[len(CapPrefix):])
	if err != nil {
		return Cap{}, fmt.Errorf("coding: parse cap: %w: %v", ErrBadCap, err)
	}
	var c Cap
	copy(c.Key[:], b[:KeySize])
	copy(c.Manifest[:], b[KeySize:])
	return c, nil
}

// MarshalText implements encoding.TextMarshaler.
func (c Cap) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Cap) UnmarshalText(b []byte) error {
	p, err := ParseCap(string(b))
	if err != nil {
		return err
	}
	*c = p
	return nil
}

// Open checks that b is the manifest this cap names and decodes it. A peer
// that returns any other bytes is caught here.
func (c Cap) Open(b []byte) (*Manifest, error) {
	if got := HashOf(b); got != c.Manifest {
		return nil, fmt.Errorf("coding: open manifest: %w: hash %s, cap names %s", ErrManifestMismatch, got.String()[:16], c.Manifest.String()[:16])
	}
	return ParseManifest(b)
}

// ErrManifestMismatch means a manifest's bytes do not hash to what the cap
// names: the peer that returned it is lying or its copy is damaged.
var ErrManifestMismatch = errors.New("manifest does not match the cap")
