package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"

	"github.com/voicering/voicering/coding"
)

// Errors callers act on. Every error a store returns wraps at most one of
// them, so callers test with errors.Is.
var (
	// ErrNotFound: the shard or record is not stored here.
	ErrNotFound = errors.New("not found")

	// ErrCorrupt: the stored bytes no longer match the hash they were stored
	// under (disk or memory damage). The data must not be used; delete it so
	// that repair rebuilds it from other peers.
	ErrCorrupt = errors.New("corrupt")

	// ErrHashMismatch: PutShard was given data whose SHA-256 differs from
	// the hash it was given. Nothing was stored.
	ErrHashMismatch = errors.New("hash mismatch")

	// ErrExists: PutShard was given a shard whose ID is already stored
	// with a different hash. Shards are immutable; delete the stored one
	// first to replace it. Nothing was stored.
	ErrExists = errors.New("a different shard is stored under this id")

	// ErrInvalid: the input breaks a documented rule (empty name, a value or
	// batch over its limit, a tombstone carrying a value, …). The message
	// names the rule. Nothing was stored.
	ErrInvalid = errors.New("invalid")

	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
)

// Limits every store enforces, so that a replica accepts what another
// replica accepted.
const (
	// MaxShardSize is the largest shard PutShard accepts: 4 MiB.
	MaxShardSize = 4 << 20

	// MaxNameSize is the longest entry name, in bytes: 1 KiB.
	MaxNameSize = 1 << 10

	// MaxValueSize is the largest entry value, in bytes: 16 KiB. Records
	// are small dictionaries (bindings, mailbox entries, manifests); a
	// bigger value belongs in an object.
	MaxValueSize = 16 << 10

	// MaxBatchEntries is the most entries one MergeRecord call accepts.
	MaxBatchEntries = 1024

	// MaxBatchSize is the most bytes of names and values (the sum of
	// len(Name)+len(Value) over the batch) one MergeRecord call accepts:
	// 512 KiB.
	MaxBatchSize = 512 << 10
)

// ShardID names shard Shard of segment Segment of the object stored under
// Index.
type ShardID struct {
	Index   coding.StorageIndex
	Segment uint32
	Shard   uint16
}

// String returns the ID as "3f2a9c01d4e5b6a7…/seg 4/shard 2": the first
// eight bytes of the index in hex, then the segment and shard numbers.
func (id ShardID) String() string {
	return fmt.Sprintf("%s…/seg %d/shard %d", hex.EncodeToString(id.Index[:8]), id.Segment, id.Shard)
}

// ShardInfo describes a stored shard without its data.
type ShardInfo struct {
	ID   ShardID
	Hash coding.Hash // SHA-256 of the shard's data
	Size int64       // length of the shard's data in bytes
}

// ShardPutter stores shards.
type ShardPutter interface {
	// PutShard stores data as the shard id, after checking that
	// coding.HashOf(data) equals hash. When PutShard returns nil the shard
	// is stored (durably, for a store that promises durability); on any
	// error nothing was stored.
	//
	// Putting a shard that is already stored with the same hash does
	// nothing and returns nil; the stored bytes are not re-checked, so a
	// shard found corrupt by GetShard must be deleted before it is put
	// again. Errors: ErrHashMismatch when the data does not hash to hash;
	// ErrExists when id is stored with a different hash; ErrInvalid when
	// data is longer than MaxShardSize; ErrClosed; the context's error.
	PutShard(ctx context.Context, id ShardID, hash coding.Hash, data []byte) error
}

// ShardGetter reads shards.
type ShardGetter interface {
	// GetShard returns the data of shard id and the hash it was stored
	// under. The data is the caller's to keep and modify.
	//
	// Errors: ErrNotFound when id is not stored; ErrCorrupt when the stored
	// bytes no longer hash to the stored hash (a local store checks on
	// every read); ErrClosed; the context's error.
	GetShard(ctx context.Context, id ShardID) ([]byte, coding.Hash, error)
}

// ShardDeleter removes shards.
type ShardDeleter interface {
	// DeleteShard removes shard id. Deleting a shard that is not stored
	// does nothing and returns nil. Errors: ErrClosed; the context's error.
	DeleteShard(ctx context.Context, id ShardID) error
}

// ShardLister lists shards for repair scans. Listings yield IDs and hashes,
// never data, and hold no lock or transaction while the caller handles an
// item, so the caller may read, put and delete shards as it goes.
//
// Listings are in ascending order of (Index, Segment, Shard) and are not a
// snapshot: a shard present for the whole listing is yielded exactly once; a
// shard put or deleted during it may or may not be. On failure the sequence
// yields one non-nil error (ErrClosed, ErrCorrupt for an unreadable entry,
// the context's error) and stops. Breaking out of the loop early is fine.
type ShardLister interface {
	// ListShards yields the shards stored under one storage index.
	ListShards(ctx context.Context, index coding.StorageIndex) iter.Seq2[ShardInfo, error]
	// ListAllShards yields every stored shard.
	ListAllShards(ctx context.Context) iter.Seq2[ShardInfo, error]
}

// Shards is the whole shard side of a store.
type Shards interface {
	ShardPutter
	ShardGetter
	ShardDeleter
	ShardLister
}

// Key names a record: SHA-256 of a typed name (see DESIGN.md).
type Key [32]byte

// String returns the first eight bytes of the key in lower-case hex and an
// ellipsis ("3f2a9c01d4e5b6a7…"), enough to tell keys apart in messages; use
// hex.EncodeToString(k[:]) for all of it.
func (k Key) String() string { return hex.EncodeToString(k[:8]) + "…" }

// RecordMerger writes records.
type RecordMerger interface {
	// MergeRecord merges entries into the record key in one atomic step:
	// each entry is written only if it wins (see Merge) against the stored
	// entry of the same name, or if no live or tombstoned entry of that
	// name is stored. Entries of the same name within the batch are first
	// merged with each other. It returns how many entries were written: 0
	// means the store already held the same or newer state.
	//
	// When MergeRecord returns nil the merged state is stored and visible
	// to every later read. A durable store keeps it across a crash of its
	// process, and across power loss unless every entry of the batch
	// expires soon (soft state, such as SIP bindings: the local store's
	// Config.SoftExpiry says how soon).
	//
	// An entry whose Expires has already passed still wins against older
	// versions, which it removes, and is itself never visible. Errors: ErrInvalid when an entry
	// breaks a rule of Entry.Validate or the batch exceeds MaxBatchEntries
	// or MaxBatchSize (nothing is written); ErrClosed; the context's error.
	MergeRecord(ctx context.Context, key Key, entries []Entry) (int, error)
}

// RecordGetter reads records.
type RecordGetter interface {
	// GetRecord returns the live entries of record key (neither tombstones
	// nor expired), sorted by Name. Errors: ErrNotFound when the record has
	// no live entry; ErrCorrupt when a stored entry cannot be decoded;
	// ErrClosed; the context's error.
	GetRecord(ctx context.Context, key Key) ([]Entry, error)

	// GetRecordState returns every unexpired entry of record key,
	// tombstones included, sorted by Name: the state a replica sends to
	// another for anti-entropy, which merges it with MergeRecord. Errors:
	// ErrNotFound when the record has no unexpired entry; ErrCorrupt;
	// ErrClosed; the context's error.
	GetRecordState(ctx context.Context, key Key) ([]Entry, error)
}

// RecordLister lists record keys for handoff scans.
type RecordLister interface {
	// RecordKeys yields, in ascending order, the keys ≥ from that hold at
	// least one entry (live or tombstone); pass Key{} for all keys. A key
	// whose entries have all expired stops being yielded about a second
	// after the last expiry. Like ShardLister, it is not a snapshot, holds
	// nothing while the caller handles a key, and on failure yields one
	// non-nil error and stops.
	RecordKeys(ctx context.Context, from Key) iter.Seq2[Key, error]
}

// Records is the whole record side of a store.
type Records interface {
	RecordMerger
	RecordGetter
	RecordLister
}
