package local

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
)

// On-disk layout, format 1. Every key starts with a one-letter prefix and a
// slash; integers are big-endian so keys sort in numeric order. The golden
// test in layout_test.go freezes these encodings.
//
//	m/format                          → "vrst" | format uint32
//	s/ index[32] segment[4] shard[2]  → shard meta: hash[32] | size uint64
//	d/ index[32] segment[4] shard[2]  → shard data, raw bytes
//	r/ key[32] name                   → entry: flags[1] | version uint64 |
//	                                     writer[32] | expires int64 | value
//
// A shard's meta and data are written and deleted in one transaction; the
// meta is small and stays in the LSM tree so that listings never touch the
// data, which goes to the value log once it reaches valueThreshold. Entry
// flags: bit 0 marks a tombstone; other bits must be zero. Expires is in Unix
// nanoseconds, 0 meaning never.
const (
	formatVersion  = 1
	shardKeyLen    = 2 + len(coding.StorageIndex{}) + 4 + 2
	shardMetaLen   = coding.HashSize + 8
	entryHeaderLen = 1 + 8 + 32 + 8
	flagDeleted    = byte(1)
)

// Read-only after initialisation: key prefixes and the format marker.
var (
	formatKey       = []byte("m/format")
	formatMagic     = []byte("vrst")
	shardMetaPrefix = []byte("s/")
	shardDataPrefix = []byte("d/")
	recordKeyPrefix = []byte("r/")
)

// errLayout marks bytes read from disk that do not decode.
var errLayout = store.ErrCorrupt

func encodeFormat(version uint32) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(formatMagic), version)
}

// decodeFormat returns the format version recorded in b.
func decodeFormat(b []byte) (uint32, error) {
	if len(b) != len(formatMagic)+4 || !bytes.HasPrefix(b, formatMagic) {
		return 0, fmt.Errorf("format marker %q: %w", b, errLayout)
	}
	return binary.BigEndian.Uint32(b[len(formatMagic):]), nil
}

func shardKey(prefix []byte, id store.ShardID) []byte {
	k := make([]byte, 0, shardKeyLen)
	k = append(k, prefix...)
	k = append(k, id.Index[:]...)
	k = binary.BigEndian.AppendUint32(k, id.Segment)
	return binary.BigEndian.AppendUint16(k, id.Shard)
}

func shardMetaKey(id store.ShardID) []byte { return shardKey(shardMetaPrefix, id) }
func shardDataKey(id store.ShardID) []byte { return shardKey(shardDataPrefix, id) }

// decodeShardKey parses a shard meta or data key.
func decodeShardKey(k []byte) (store.ShardID, error) {
	var id store.ShardID
	if len(k) != shardKeyLen || !(bytes.HasPrefix(k, shardMetaPrefix) || bytes.HasPrefix(k, shardDataPrefix)) {
		return id, fmt.Errorf("shard key %x: %w", k, errLayout)
	}
	k = k[2:]
	n := copy(id.Index[:], k)
	id.Segment = binary.BigEndian.Uint32(k[n:])
	id.Shard = binary.BigEndian.Uint16(k[n+4:])
	return id, nil
}

func encodeShardMeta(hash coding.Hash, size int64) []byte {
	b := make([]byte, 0, shardMetaLen)
	b = append(b, hash[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(size))
}

func decodeShardMeta(b []byte) (coding.Hash, int64, error) {
	var h coding.Hash
	if len(b) != shardMetaLen {
		return h, 0, fmt.Errorf("shard meta of %d bytes, want %d: %w", len(b), shardMetaLen, errLayout)
	}
	n := copy(h[:], b)
	size := binary.BigEndian.Uint64(b[n:])
	if size > store.MaxShardSize {
		return h, 0, fmt.Errorf("shard meta: size %d over the limit %d: %w", size, store.MaxShardSize, errLayout)
	}
	return h, int64(size), nil
}

// recordPrefix is the prefix of every entry of the record key.
func recordPrefix(key store.Key) []byte {
	p := make([]byte, 0, len(recordKeyPrefix)+len(key))
	p = append(p, recordKeyPrefix...)
	return append(p, key[:]...)
}

func entryKey(key store.Key, name string) []byte {
	k := make([]byte, 0, len(recordKeyPrefix)+len(key)+len(name))
	k = append(k, recordKeyPrefix...)
	k = append(k, key[:]...)
	return append(k, name...)
}

// decodeEntryKey splits an entry key into the record key and entry name.
func decodeEntryKey(k []byte) (store.Key, string, error) {
	var key store.Key
	n := len(recordKeyPrefix) + len(key)
	if len(k) <= n || len(k) > n+store.MaxNameSize || !bytes.HasPrefix(k, recordKeyPrefix) {
		return key, "", fmt.Errorf("entry key %x: %w", k, errLayout)
	}
	copy(key[:], k[len(recordKeyPrefix):])
	return key, string(k[n:]), nil
}

// encodeEntry encodes everything of e but its name, which is in the key.
func encodeEntry(e store.Entry) []byte {
	b := make([]byte, 0, entryHeaderLen+len(e.Value))
	var flags byte
	if e.Deleted {
		flags |= flagDeleted
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, e.Version)
	b = append(b, e.Writer[:]...)
	var exp int64
	if !e.Expires.IsZero() {
		exp = e.Expires.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(exp))
	return append(b, e.Value...)
}

// decodeEntry decodes the value b of the entry called name. The result does
// not alias b. It accepts exactly what encodeEntry produces for a valid
// entry, so encodeEntry(decodeEntry(b)) == b.
func decodeEntry(name string, b []byte) (store.Entry, error) {
	e := store.Entry{Name: name}
	if len(b) < entryHeaderLen {
		return e, fmt.Errorf("entry %q: %d bytes, shorter than its %d-byte header: %w", name, len(b), entryHeaderLen, errLayout)
	}
	flags := b[0]
	if flags&^flagDeleted != 0 {
		return e, fmt.Errorf("entry %q: unknown flags %#x: %w", name, flags, errLayout)
	}
	e.Deleted = flags&flagDeleted != 0
	e.Version = binary.BigEndian.Uint64(b[1:])
	copy(e.Writer[:], b[9:41])
	if exp := int64(binary.BigEndian.Uint64(b[41:])); exp < 0 {
		return e, fmt.Errorf("entry %q: negative expiry %d: %w", name, exp, errLayout)
	} else if exp > 0 {
		e.Expires = time.Unix(0, exp)
	}
	if v := b[entryHeaderLen:]; len(v) > 0 {
		e.Value = bytes.Clone(v)
	}
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("entry %q: %v: %w", name, err, errLayout)
	}
	return e, nil
}

// ttl returns badger's expiry for an entry: Unix seconds, rounded up so
// badger never drops an entry early (readers filter to the nanosecond), 0
// for never.
func ttl(expires time.Time) uint64 {
	if expires.IsZero() {
		return 0
	}
	s := expires.Unix()
	if expires.Nanosecond() > 0 {
		s++
	}
	return uint64(s)
}
