// Package ring is the store spread over the ring: records replicated on
// their key's successors, and erasure-coded objects whose shards live on
// the successors of each segment's placement key. It reaches peers through
// two small interfaces, a Locator (a *dht.Node, or a *dht.Client for a
// process that joins nothing) and a Dialer (a peer's local store for
// itself, store/remote for the others), so the same code serves peers,
// clients and tests.
//
// # Records
//
// A record lives on the first N live peers clockwise from its key
// (Quorum.N, default R = 3). Writes go to all N at once and succeed once W
// stored them; reads ask all N, need R answers, merge the entries they get
// (store.Merge: last writer wins per entry, tombstones for deletes) and
// write the merged state back to replicas that were behind (read repair).
// With W + R > N — the default majorities — a read sees every acknowledged
// write. The Maintainer hands each record to its current replica set when
// membership changes, so a key keeps its copies without anyone asking.
//
// # Objects
//
// Put encodes a stream (package coding) and places shard i of segment s
// on the i-th live successor of PlacementKey(storage index, s); a failed
// shard falls back on a spare successor, and the put returns a cap only
// when every shard is on a distinct peer and the manifest is stored. The
// manifest is a record, cut into 16 KiB entries, kept on max(R, parity+1)
// replicas so that it survives as many losses as the shards do; it is
// immutable and checked against the cap, so a reader trusts any replica
// that answers. Get asks every placement peer (and a few spares, since
// shards drift one peer along when a peer dies) at once, keeps the first
// Needed shards that match the manifest and cancels the rest. A segment
// still short — right after failures, lookups may name dead peers or
// leave out live ones a failed call made suspect — is looked up again,
// six times over about 3 s, asking also the peers earlier lookups named,
// before the read fails.
//
// # Repair
//
// Coordinator-free: for each segment a peer holds a shard of, the first
// placement peer holding any shard of it is its repairer. It moves drifted
// shards home, deletes shards that do not match the manifest, rebuilds lost
// ones from Needed others (Reed–Solomon over ciphertext: the repairer never
// holds a key), and drops surplus copies, at a bounded byte rate. A segment
// found whole is trusted until its placement changes or the scrub interval
// passes.
package ring
