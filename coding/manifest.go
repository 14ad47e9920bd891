package coding

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// FormatVersion is the manifest and cap format this package writes and reads.
const FormatVersion = 1

// Format constants of manifest version 1. They are frozen by the vectors in
// testdata/coding: a change here is a new format version, never an edit.
const (
	manifestMagic   = "VRMF"
	manifestVersion = FormatVersion
	hashSHA256      = 1 // shard hash algorithm id
	aeadAES256GCM   = 1 // segment AEAD id
	manifestHeader  = 4 + 1 + 1 + 1 + 1 + 2 + 2 + 4 + 8 + 1
)

// Limits on what a manifest may describe.
const (
	// MinSegmentSize and MaxSegmentSize bound Manifest.SegmentSize.
	MinSegmentSize = 1 << 10
	MaxSegmentSize = 64 << 20
	// MaxManifestSize bounds a manifest's encoding, so that it stays a small
	// replicated record. With the default 1 MiB segments and 4-of-6 it allows
	// objects up to about 21 GiB; wider schemes allow proportionally less.
	MaxManifestSize = 4 << 20
	// MaxContentTypeLen bounds Manifest.ContentType.
	MaxContentTypeLen = 255
)

// ErrBadManifest is wrapped by every error about a malformed manifest.
var ErrBadManifest = errors.New("malformed manifest")

// Manifest is what a reader needs to fetch, check and rebuild an object. It
// holds no secret: storage peers keep it as a record, and a reader checks it
// against the hash in its cap.
type Manifest struct {
	Size        int64  // plaintext size in bytes
	SegmentSize int    // plaintext bytes per segment (the last may be shorter)
	Scheme      Scheme // coding of every segment
	ContentType string // MIME type given at put, may be empty
	// ShardHashes[s][i] is the hash of shard i of segment s.
	ShardHashes [][]Hash
}

// Segments returns the number of segments of an object of size bytes cut
// into segmentSize pieces. Every object has at least one segment, so even an
// empty object is stored, placed and authenticated like any other.
func Segments(size int64, segmentSize int) int { return int(segments64(size, segmentSize)) }

// segments64 is Segments without overflow for any size a peer may claim.
func segments64(size int64, segmentSize int) int64 {
	if size <= 0 {
		return 1
	}
	return (size-1)/int64(segmentSize) + 1
}

// SegmentLen returns the plaintext length of segment s.
func (m *Manifest) SegmentLen(s int) int {
	n := m.Size - int64(s)*int64(m.SegmentSize)
	return int(min(max(n, 0), int64(m.SegmentSize)))
}

// ShardSize returns the size in bytes of every shard of segment s.
func (m *Manifest) ShardSize(s int) int { return shardSize(m.SegmentLen(s), m.Scheme.Needed) }

// shardSize is the shard size of a segment of n plaintext bytes: the sealed
// segment (plaintext and GCM tag) cut into needed equal, zero-padded pieces.
func shardSize(n, needed int) int { return (n + tagSize + needed - 1) / needed }

// CheckShard reports whether data is shard i of segment s.
func (m *Manifest) CheckShard(s, i int, data []byte) bool {
	if s < 0 || s >= len(m.ShardHashes) || i < 0 || i >= m.Scheme.Total {
		return false
	}
	return len(data) == m.ShardSize(s) && HashOf(data) == m.ShardHashes[s][i]
}

// Hash returns the hash of the manifest's canonical encoding: the value a
// cap holds.
func (m *Manifest) Hash() (Hash, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return Hash{}, err
	}
	return HashOf(b), nil
}

// validate checks every field, so that what is encoded can be parsed back.
func (m *Manifest) validate() error {
	if err := m.Scheme.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if m.SegmentSize < MinSegmentSize || m.SegmentSize > MaxSegmentSize {
		return fmt.Errorf("%w: segment size %d is outside [%d, %d]", ErrBadManifest, m.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	if m.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrBadManifest, m.Size)
	}
	if err := checkContentType(m.ContentType); err != nil {
		return err
	}
	n := manifestLen(m.Size, m.SegmentSize, m.Scheme.Total, len(m.ContentType))
	if n > MaxManifestSize {
		return fmt.Errorf("%w: %d bytes of hashes exceed the %d-byte limit (%w)", ErrBadManifest, n, MaxManifestSize, ErrTooLarge)
	}
	segs := Segments(m.Size, m.SegmentSize)
	if len(m.ShardHashes) != segs {
		return fmt.Errorf("%w: %d segments of hashes, want %d for %d bytes", ErrBadManifest, len(m.ShardHashes), segs, m.Size)
	}
	for s, hs := range m.ShardHashes {
		if len(hs) != m.Scheme.Total {
			return fmt.Errorf("%w: segment %d has %d shard hashes, want %d", ErrBadManifest, s, len(hs), m.Scheme.Total)
		}
	}
	return nil
}

// ErrTooLarge means an object has too many segments for one manifest.
var ErrTooLarge = errors.New("object too large for one manifest; use a larger segment size")

// manifestLen is the encoded length of a manifest; it uses int64 throughout
// so that absurd sizes from a hostile peer cannot overflow.
func manifestLen(size int64, segmentSize, total, ctLen int) int64 {
	segs := segments64(size, segmentSize)
	if segs > MaxManifestSize { // far past the limit already; keep the product small
		return MaxManifestSize + 1
	}
	return manifestHeader + int64(ctLen) + segs*int64(total)*HashSize
}

func checkContentType(ct string) error {
	if len(ct) > MaxContentTypeLen {
		return fmt.Errorf("%w: content type is %d bytes, at most %d", ErrBadManifest, len(ct), MaxContentTypeLen)
	}
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: content type %q has a non-printable byte at %d", ErrBadManifest, ct, i)
		}
	}
	return nil
}

// MarshalBinary returns the canonical encoding of m (format version 1):
//
//	"VRMF" | version u8 | hash alg u8 | aead u8 | reserved u8 (0)
//	needed u16 | total u16 | segment size u32 | size u64      (big-endian)
//	content-type length u8 | content type
//	shard hashes: segments × total × 32 bytes, segment-major
//
// Every manifest has exactly one encoding, so its hash names it.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("coding: encode manifest: %w", err)
	}
	n := manifestLen(m.Size, m.SegmentSize, m.Scheme.Total, len(m.ContentType))
	b := make([]byte, 0, n)
	b = append(b, manifestMagic...)
	b = append(b, manifestVersion, hashSHA256, aeadAES256GCM, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Scheme.Needed))
	b = binary.BigEndian.AppendUint16(b, uint16(m.Scheme.Total))
	b = binary.BigEndian.AppendUint32(b, uint32(m.SegmentSize))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Size))
	b = append(b, byte(len(m.ContentType)))
	b = append(b, m.ContentType...)
	for _, hs := range m.ShardHashes {
		for _, h := range hs {
			b = append(b, h[:]...)
		}
	}
	return b, nil
}

// ParseManifest decodes a manifest's canonical encoding. It accepts exactly
// what MarshalBinary produces and returns a clear error for anything else:
// bytes from a peer are never trusted to be well-formed.
func ParseManifest(b []byte) (*Manifest, error) {
	m, err := parseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("coding: parse manifest: %w", err)
	}
	return m, nil
}

func parseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadManifest, len(b), MaxManifestSize)
	}
	if len(b) < manifestHeader {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrBadManifest, len(b), manifestHeader)
	}
	if string(b[:4]) != manifestMagic {
		return nil, fmt.Errorf("%w: does not start with %q", ErrBadManifest, manifestMagic)
	}
	if v := b[4]; v != manifestVersion {
		return nil, fmt.Errorf("%w: format version %d; this voicering reads version %d (upgrade it)", ErrBadManifest, v, manifestVersion)
	}
	if b[5] != hashSHA256 || b[6] != aeadAES256GCM || b[7] != 0 {
		return nil, fmt.Errorf("%w: unknown hash %d, cipher %d or flags %d", ErrBadManifest, b[5], b[6], b[7])
	}
	m := &Manifest{
		Scheme:      Scheme{Needed: int(binary.BigEndian.Uint16(b[8:])), Total: int(binary.BigEndian.Uint16(b[10:]))},
		SegmentSize: int(binary.BigEndian.Uint32(b[12:])),
	}
	size := binary.BigEndian.Uint64(b[16:])
	if size > 1<<62 {
		return nil, fmt.Errorf("%w: size %d is implausible", ErrBadManifest, size)
	}
	m.Size = int64(size)
	ctLen := int(b[24])
	rest := b[manifestHeader:]
	if len(rest) < ctLen {
		return nil, fmt.Errorf("%w: content type cut short", ErrBadManifest)
	}
	m.ContentType, rest = string(rest[:ctLen]), rest[ctLen:]
	// Check the scheme and segment size before trusting them to size the
	// hash table below.
	if err := m.Scheme.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if m.SegmentSize < MinSegmentSize || m.SegmentSize > MaxSegmentSize {
		return nil, fmt.Errorf("%w: segment size %d is outside [%d, %d]", ErrBadManifest, m.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	if want := manifestLen(m.Size, m.SegmentSize, m.Scheme.Total, ctLen); int64(len(b)) != want {
		return nil, fmt.Errorf("%w: %d bytes, want %d for %d bytes in %d-byte segments coded %s", ErrBadManifest, len(b), want, m.Size, m.SegmentSize, m.Scheme)
	}
	segs := Segments(m.Size, m.SegmentSize)
	all := make([]Hash, segs*m.Scheme.Total)
	for i := range all {
		copy(all[i][:], rest[i*HashSize:])
	}
	m.ShardHashes = make([][]Hash, segs)
	for s := range m.ShardHashes {
		m.ShardHashes[s] = all[s*m.Scheme.Total : (s+1)*m.Scheme.Total : (s+1)*m.Scheme.Total]
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// SchemeOf reads the scheme from the start of a manifest's encoding (its
// first chunk is enough), without parsing the rest. It reports false when b
// does not start like a valid manifest.
func SchemeOf(b []byte) (Scheme, bool) {
	if len(b) < manifestHeader || string(b[:4]) != manifestMagic || b[4] != manifestVersion {
		return Scheme{}, false
	}
	s := Scheme{Needed: int(binary.BigEndian.Uint16(b[8:])), Total: int(binary.BigEndian.Uint16(b[10:]))}
	return s, s.Validate() == nil
}
