// Package store is the contract of a peer's storage: shards of
// erasure-coded objects, and records (small replicated dictionaries).
package store
