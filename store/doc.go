// Package store is the contract of a peer's storage: shards of
// erasure-coded objects, and records, the small replicated dictionaries
// that hold SIP bindings, mailboxes and manifests. Implementations live in
// sub-packages named by mechanism: store/local keeps one peer's data on its
// disk (badger), store/remote reaches another peer's store over the ring.
// Every implementation runs the conformance suite in store/storetest.
//
// # Roles
//
// The contract is a set of tiny role interfaces, each method documenting
// its every outcome: ShardPutter, ShardGetter, ShardDeleter and ShardLister
// make up Shards; RecordMerger, RecordGetter and RecordLister make up
// Records. A consumer asks for the slice it needs. Errors wrap at most one
// of the sentinels (ErrNotFound, ErrCorrupt, ErrHashMismatch, ErrExists,
// ErrInvalid, ErrClosed) and name the shard or record concerned, for
// example "store: put shard 3f2a9c01d4e5b6a7…/seg 4/shard 2: hash mismatch:
// data hashes to …, want …".
//
// Shards are immutable and content-checked: a store refuses data that does
// not hash to the given hash, keeps the first version of a shard ID, and
// (for a local store) re-hashes the bytes on every read so that disk damage
// surfaces as ErrCorrupt rather than as a wrong answer. Listings yield IDs,
// hashes and sizes, never data, so a repair scan of a full disk runs in
// little memory.
//
// # Records and the merge rule
//
// A record is a set of named entries under a 32-byte Key. Each entry carries
// a Version, the Writer's node ID, an optional absolute expiry, and a
// tombstone flag. Replicas converge by keeping, per name, the entry that
// wins under Merge: the higher Version; on a tie the higher Writer (byte
// order); then a tombstone over a live entry; then the higher Value (byte
// order); then the later expiry (never counting as latest); then the higher
// Name. Merge is a total order's maximum, so it is commutative, associative
// and idempotent: replicas that exchange entries in any order and any number
// of times end equal (entry_test.go checks this on seeded random entries).
//
// Deletion writes a tombstone, which readers do not see (GetRecord) but
// replicas exchange (GetRecordState), so a deletion reaches every replica.
// Entries and tombstones expire on their own at Expires; a tombstone must
// outlive the entries it kills, and its writer sets its expiry accordingly.
//
// # Limits
//
// Shards up to MaxShardSize (4 MiB); entry names up to MaxNameSize (1 KiB)
// and values up to MaxValueSize (16 KiB); merge batches up to
// MaxBatchEntries (1024) entries and MaxBatchSize (512 KiB) of names and
// values. Every store enforces the same limits, so what one replica accepts
// every other accepts too.
//
// # The local store
//
// store/local keeps everything in one badger database per peer. Keys carry
// a one-letter prefix: "m/format" holds the on-disk format version, written
// when the store is created and checked on every open (a newer format is a
// clear error, never a silent misread); "s/" + index + segment + shard (big
// endian) holds a shard's hash and size; "d/" + the same holds its bytes;
// "r/" + key + name holds a record entry (flags, version, writer, expiry,
// value). Shard meta and data change together in one transaction. The meta
// and all record entries stay in badger's LSM tree; shard data of 20 KiB
// or more goes to the value log, which Run garbage-collects. Entries are
// written with a badger TTL (rounded up to the second), and reads filter
// expiry to the nanosecond. The encodings are frozen by a golden test.
//
// Durability comes in two classes. Every acknowledged write survives the
// crash of the process: it is in badger's memory-mapped log before it
// returns; a test kills a writing process with SIGKILL and checks every
// acknowledged shard and entry afterwards. Durable writes also survive
// power loss: they are fsynced before they return. They are shard puts and
// deletions, and record merges holding an entry that does not expire
// within Config.SoftExpiry (24 hours): manifests, mailboxes, accounts,
// deletions of them (tombstones live 30 days). Soft state, a merge whose
// every entry expires within SoftExpiry, is not fsynced: SIP bindings,
// which phones refresh and R replicas hold, so that a power cut of one
// replica loses at most its last moments of refreshes. Badger runs without
// SyncWrites; the store fsyncs badger's new log files itself, once for all
// the durable writes that wait at the same time (group commit), where
// SyncWrites made every commit, soft or not, wait for its own fsync.
// Config.NoSync fsyncs nothing.
//
// Record merges that arrive together share a transaction (group commit,
// Coalescer): one transaction of each durability class runs at a time,
// and the merges that arrive meanwhile make up the next one, so soft
// state never waits behind an fsync. Across the ring the same happens per
// peer: remote.Pool keeps one merge call in flight to each peer and sends
// the merges that waited for it as one store.record.mergemany call
// (BatchMerger), which that peer writes in one transaction. A lone merge
// goes at once and alone; under load batches grow with the backlog. A
// steady stream of merges that each find nothing in flight would still go
// one by one, so soft-state merges and merges to other peers linger
// (MergeLinger, 10 ms) for company while they arrive at least two per
// linger. Each merge of a batch still succeeds or fails on its own.
//
// Memory: badger's defaults hold about 86 MiB of heap per open database,
// nearly all of it the arena of its 64 MiB memtable, allocated up front:
// too much for a test that runs 16 peers in one process. The local store uses
// 8 MiB memtables (2 of them), no compression and no block or index cache
// (tables are memory-mapped; the OS page cache does the caching), a 64 MiB
// value-log file size and 2 compactors. Measured with 16 stores open in one
// process, each holding a shard and a record, it needs 10.5 MiB of heap per
// store against 85.7 MiB with badger's defaults:
//
//	go test ./store/local -run '^$' -bench Open16 -benchtime 1x
package store
