package ring

import (
	"context"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// Locator finds the peers responsible for a key: a *dht.Node, or a
// *dht.Client for a process that joins nothing.
type Locator interface {
	// Lookup returns the first n distinct live peers clockwise from key,
	// fewer if the ring has fewer.
	Lookup(ctx context.Context, key dht.ID, n int) ([]dht.Peer, dht.LookupStats, error)
}

// Backend is one peer's store as the ring store reaches it: a remote
// store, or the local one for the peer itself.
type Backend interface {
	store.Shards
	store.Records
}

// Dialer returns the store of peer p. It does not connect; calls on the
// returned Backend do.
type Dialer func(p dht.Peer) Backend

// keyID turns a record key into the ring position it lives at.
func keyID(k store.Key) dht.ID { return dht.ID(k) }
