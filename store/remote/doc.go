// Package remote serves a peer's local store to the other peers over the
// ring transport (Register), and reaches another peer's store (Store) with
// the same contract as a local one: the same methods, the same sentinel
// errors, the same conformance suite (store/storetest).
//
// Messages are fixed-layout big-endian binary with counted lengths bounded
// by the store's limits; every answer starts with a status byte that carries
// the store error across the wire, so errors.Is(err, store.ErrNotFound)
// holds on the caller's side. Listings are paged. Every decoder of bytes from
// the network is fuzzed and answers malformed input with store.ErrInvalid,
// never a crash.
package remote
