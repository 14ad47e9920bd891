package dht

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
)

// IDSize is the size in bytes of an ID.
const IDSize = sha256.Size

// ID is a point on the 256-bit ring: a node ID (SHA-256 of the node's
// Ed25519 public key) or a key (SHA-256 of a typed name). IDs compare as
// big-endian unsigned integers.
type ID [IDSize]byte

// Key returns the ring key of a typed name such as
// "aor:sip:alice@example.org": the SHA-256 of the name.
func Key(typedName string) ID { return sha256.Sum256([]byte(typedName)) }

// IDOf returns the node ID bound to an Ed25519 public key: its SHA-256.
func IDOf(pub ed25519.PublicKey) ID { return sha256.Sum256(pub) }

// ParseID parses the 64-digit hex form returned by String.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("dht: parse id %q: want %d hex digits, got %d", s, 2*IDSize, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("dht: parse id %q: %w", s, err)
	}
	return id, nil
}

// String returns the ID in lower-case hex (64 digits).
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for logs.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is all zeros, which the package uses to mean
// "not known" (a bootstrap address whose node ID is not known yet).
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText encodes the ID as hex, so IDs read well in JSON.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes the hex form.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Compare returns -1, 0 or +1 as id is less than, equal to or greater
// than o.
func (id ID) Compare(o ID) int { return bytes.Compare(id[:], o[:]) }

// Distance returns the clockwise distance from a to b: b − a mod 2^256.
func Distance(a, b ID) ID {
	var d ID
	borrow := 0
	for i := IDSize - 1; i >= 0; i-- {
		v := int(b[i]) - int(a[i]) - borrow
		borrow = 0
		if v < 0 {
			v += 256
			borrow = 1
		}
		d[i] = byte(v)
	}
	return d
}

// AddPow2 returns id + 2^k mod 2^256 (k < 256), the start of finger k.
func (id ID) AddPow2(k int) ID {
	if k < 0 || k >= 8*IDSize {
		panic(fmt.Sprintf("dht: AddPow2(%d) out of range", k))
	}
	r := id
	i := IDSize - 1 - k/8
	carry := 1 << (k % 8)
	for ; i >= 0 && carry != 0; i-- {
		v := int(r[i]) + carry
		r[i] = byte(v)
		carry = v >> 8
	}
	return r
}

// Between reports whether x lies strictly inside the clockwise interval
// (a, b). When a == b the interval is the whole ring except a.
func Between(x, a, b ID) bool {
	switch a.Compare(b) {
	case -1:
		return a.Compare(x) < 0 && x.Compare(b) < 0
	case 1:
		return a.Compare(x) < 0 || x.Compare(b) < 0
	default:
		return x != a
	}
}

// BetweenRight reports whether x lies in the clockwise interval (a, b].
// When a == b the interval is the whole ring.
func BetweenRight(x, a, b ID) bool { return x == b || Between(x, a, b) }

// Fraction returns id / 2^256 as a float64 in [0, 1): the share of the
// ring a distance covers.
func (id ID) Fraction() float64 {
	f, _ := new(big.Float).SetInt(new(big.Int).SetBytes(id[:])).Float64()
	return f / math.Exp2(256)
}

// Peer is a node as others reach it: its ID and its network address.
// A Peer with a zero ID stands for "whoever answers at Addr" (a bootstrap
// address); calls to it authenticate the answering peer but cannot check
// that it is a particular one.
type Peer struct {
	ID   ID     `json:"id"`
	Addr string `json:"addr"`
}

// String returns "shortid@addr", for logs.
func (p Peer) String() string {
	if p.ID.IsZero() {
		return "?@" + p.Addr
	}
	return p.ID.Short() + "@" + p.Addr
}
