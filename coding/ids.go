package coding

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashSize is the size in bytes of a Hash.
const HashSize = sha256.Size

// Hash is the SHA-256 digest of a shard or of a manifest's canonical
// encoding. It is what a reader checks a peer's answer against.
type Hash [HashSize]byte

// HashOf returns the SHA-256 digest of b.
func HashOf(b []byte) Hash { return sha256.Sum256(b) }

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// StorageIndex names where an object lives on the ring: its manifest is a
// record under this index and its shards are keyed by it. It is derived
// one-way from the object's key (see Key.StorageIndex), so a peer that knows
// where an object is stored cannot read it.
type StorageIndex [32]byte

// String returns the index in lower-case hex.
func (si StorageIndex) String() string { return hex.EncodeToString(si[:]) }
