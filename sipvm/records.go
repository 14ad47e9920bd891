package sipvm

import (
	"context"
	"strings"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// Records is the slice of the ring's replicated records SIP needs;
// *ring.Records is one.
type Records interface {
	// Get returns the live entries of record key. It returns an error
	// wrapping store.ErrNotFound when the record holds none, and another
	// error when too few replicas answered.
	Get(ctx context.Context, key store.Key) ([]store.Entry, error)
	// Put merges entries into record key; nil means a majority of its
	// replicas stored them.
	Put(ctx context.Context, key store.Key, entries ...store.Entry) error
	// Delete writes tombstones for the named entries of record key.
	Delete(ctx context.Context, key store.Key, names ...string) error
}

// AOR returns the canonical address of record of user at domain:
// "sip:user@domain", the domain in lower case.
func AOR(user, domain string) string {
	return "sip:" + user + "@" + strings.ToLower(domain)
}

// BindingsKey is the key of the record holding aor's bindings.
func BindingsKey(aor string) store.Key { return store.Key(dht.Key("aor:" + aor)) }

// credentialsKey is the key of the record holding aor's digest HA1s.
func credentialsKey(aor string) store.Key { return store.Key(dht.Key("cred:" + aor)) }

// usersKey is the key of the index of domain's accounts.
func usersKey(domain string) store.Key {
	return store.Key(dht.Key("users:" + strings.ToLower(domain)))
}
