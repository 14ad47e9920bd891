package remote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
)

// errMalformed is wrapped by every decoding error: the bytes did not come
// from this package's encoder.
var errMalformed = errors.New("malformed store message")

// reader decodes the fixed-layout, big-endian messages of this package. The
// first failure sticks; callers check err once at the end.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s cut short", errMalformed, what)
	}
	r.b = nil
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.fail(what)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(what string) uint8 {
	if b := r.bytes(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if b := r.bytes(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.bytes(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.bytes(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) b32(what string) (v [32]byte) {
	copy(v[:], r.bytes(32, what))
	return v
}

// blob reads a u32 length and that many bytes, at most max.
func (r *reader) blob(max int, what string) []byte {
	n := r.u32(what)
	if r.err == nil && int64(n) > int64(max) {
		r.err = fmt.Errorf("%w: %s is %d bytes, the limit is %d", errMalformed, what, n, max)
		return nil
	}
	return r.bytes(int(n), what)
}

// done reports the first error, or trailing bytes.
func (r *reader) done() error {
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", errMalformed, len(r.b))
	}
	return r.err
}

func appendBlob(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendShardID(b []byte, id store.ShardID) []byte {
	b = append(b, id.Index[:]...)
	b = binary.BigEndian.AppendUint32(b, id.Segment)
	return binary.BigEndian.AppendUint16(b, id.Shard)
}

func (r *reader) shardID() store.ShardID {
	return store.ShardID{Index: r.b32("storage index"), Segment: r.u32("segment"), Shard: r.u16("shard")}
}

// Entry layout: name blob | value blob | version u64 | writer 32 |
// expires unix-nano i64 (0 = never) | flags u8 (1 = tombstone).
func appendEntry(b []byte, e store.Entry) []byte {
	b = appendBlob(b, []byte(e.Name))
	b = appendBlob(b, e.Value)
	b = binary.BigEndian.AppendUint64(b, e.Version)
	b = append(b, e.Writer[:]...)
	var exp int64
	if !e.Expires.IsZero() {
		exp = e.Expires.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(exp))
	var flags byte
	if e.Deleted {
		flags = 1
	}
	return append(b, flags)
}

func (r *reader) entry() store.Entry {
	e := store.Entry{
		Name:    string(r.blob(store.MaxNameSize, "entry name")),
		Value:   r.blob(store.MaxValueSize, "entry value"),
		Version: r.u64("entry version"),
		Writer:  r.b32("entry writer"),
	}
	if exp := int64(r.u64("entry expiry")); exp != 0 {
		if exp < 0 {
			r.err = fmt.Errorf("%w: negative expiry", errMalformed)
		}
		e.Expires = time.Unix(0, exp)
	}
	switch f := r.u8("entry flags"); f {
	case 0:
	case 1:
		e.Deleted = true
	default:
		if r.err == nil {
			r.err = fmt.Errorf("%w: unknown entry flags %#x", errMalformed, f)
		}
	}
	if len(e.Value) == 0 {
		e.Value = nil
	}
	return e
}

func appendEntries(b []byte, es []store.Entry) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(es)))
	for _, e := range es {
		b = appendEntry(b, e)
	}
	return b
}

// entries reads a counted list of at most max entries.
func (r *reader) entries(max int) []store.Entry {
	n := r.u32("entry count")
	if r.err == nil && int64(n) > int64(max) {
		r.err = fmt.Errorf("%w: %d entries, the limit is %d", errMalformed, n, max)
	}
	if r.err != nil {
		return nil
	}
	es := make([]store.Entry, 0, min(int(n), 64))
	for range n {
		e := r.entry()
		if r.err != nil {
			return nil
		}
		es = append(es, e)
	}
	return es
}

// Response status, the first byte of every answer: the store error the
// handler returned, so that callers can still test it with errors.Is.
const (
	statusOK byte = iota
	statusNotFound
	statusCorrupt
	statusHashMismatch
	statusExists
	statusInvalid
	statusClosed
	statusFailed
)

var statusErrors = []struct {
	status byte
	err    error
}{
	{statusNotFound, store.ErrNotFound},
	{statusCorrupt, store.ErrCorrupt},
	{statusHashMismatch, store.ErrHashMismatch},
	{statusExists, store.ErrExists},
	{statusInvalid, store.ErrInvalid},
	{statusClosed, store.ErrClosed},
}

// answer encodes a handler's result: status then payload, or status then
// the error's message.
func answer(payload []byte, err error) []byte {
	if err == nil {
		return append([]byte{statusOK}, payload...)
	}
	st := statusFailed
	if errors.Is(err, errMalformed) {
		st = statusInvalid
	}
	for _, se := range statusErrors {
		if errors.Is(err, se.err) {
			st = se.status
			break
		}
	}
	return append([]byte{st}, err.Error()...)
}

// remoteError is a store error a peer answered with. It unwraps to the
// store sentinel of its status, so errors.Is works across the wire.
type remoteError struct {
	peer    string
	status  byte
	message string
}

func (e *remoteError) Error() string { return fmt.Sprintf("peer %s: %s", e.peer, e.message) }

func (e *remoteError) Unwrap() error {
	for _, se := range statusErrors {
		if se.status == e.status {
			return se.err
		}
	}
	return nil
}

// parseAnswer splits an answer into its payload or its error.
func parseAnswer(peer string, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty answer from peer %s", errMalformed, peer)
	}
	if b[0] == statusOK {
		return b[1:], nil
	}
	return nil, &remoteError{peer: peer, status: b[0], message: string(b[1:min(len(b), 1+1024)])}
}

func appendInfo(b []byte, in store.ShardInfo) []byte {
	b = appendShardID(b, in.ID)
	b = append(b, in.Hash[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(in.Size))
}

func (r *reader) info() store.ShardInfo {
	in := store.ShardInfo{ID: r.shardID(), Hash: coding.Hash(r.b32("shard hash"))}
	size := r.u64("shard size")
	if size > math.MaxInt32 {
		r.err = fmt.Errorf("%w: shard size %d", errMalformed, size)
	}
	in.Size = int64(size)
	return in
}
