package peer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store/remote"
	"github.com/voicering/voicering/store/ring"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Peers lists addresses of ring peers to start lookups from; any live
	// one will do. Required.
	Peers []string
	// Identity is what the client authenticates as. Nil: a fresh key for
	// this client only, which open rings accept. A closed ring admits only
	// an identity with a certificate from its CA.
	Identity *dht.Identity
	// CA is the ring's CA certificate, for a closed ring. Nil: open ring.
	CA *x509.Certificate
	// Replicas is R for records; it must match the ring's. Zero: 3.
	Replicas int
	// Logger receives corrupt shards and failed calls. Nil: discarded.
	Logger *slog.Logger
}

// Client uses a ring without joining it: it looks keys up iteratively
// itself and talks to the storage peers directly, in parallel, so a
// download draws on every peer holding a shard.
type Client struct {
	tr      *dht.TLSTransport
	lookup  *dht.Client
	records *ring.Records
	objects *ring.Objects
}

// NewClient returns a client of the ring cfg.Peers belong to. It connects
// lazily, on the first call.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Peers) == 0 {
		return nil, errors.New("peer: client: no ring peer address given")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = dht.NewIdentity(nil); err != nil {
			return nil, fmt.Errorf("peer: client: %w", err)
		}
	}
	tr, err := dht.NewTLSTransport(dht.TLSConfig{Identity: id, CA: cfg.CA, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("peer: client: %w", err)
	}
	c := &Client{tr: tr}
	if c.lookup, err = dht.NewClient(dht.ClientConfig{Caller: tr, Bootstrap: cfg.Peers}); err != nil {
		tr.Close()
		return nil, fmt.Errorf("peer: client: %w", err)
	}
	dial := c.Dial
	if c.records, err = ring.NewRecords(ring.RecordsConfig{Locator: c.lookup, Dial: dial, Replicas: cfg.Replicas, Writer: id.ID(), Logger: cfg.Logger}); err != nil {
		tr.Close()
		return nil, fmt.Errorf("peer: client: %w", err)
	}
	if c.objects, err = ring.NewObjects(ring.ObjectsConfig{Locator: c.lookup, Dial: dial, Records: c.records, Logger: cfg.Logger}); err != nil {
		tr.Close()
		return nil, fmt.Errorf("peer: client: %w", err)
	}
	return c, nil
}

// Objects returns the ring's objects as this client reaches them.
func (c *Client) Objects() *ring.Objects { return c.objects }

// Records returns the ring's records as this client reaches them.
func (c *Client) Records() *ring.Records { return c.records }

// Lookup finds the first n live peers clockwise from key.
func (c *Client) Lookup(ctx context.Context, key dht.ID, n int) ([]dht.Peer, dht.LookupStats, error) {
	return c.lookup.Lookup(ctx, key, n)
}

// Dial returns the store of peer p, reached directly.
func (c *Client) Dial(p dht.Peer) ring.Backend { return remote.New(c.tr, p) }

// Status asks the peer at addr for its view of the ring.
func (c *Client) Status(ctx context.Context, addr string) (*Status, error) {
	b, err := c.tr.Call(ctx, dht.Peer{Addr: addr}, methodStatus, nil)
	if err != nil {
		return nil, fmt.Errorf("peer: status of %s: %w", addr, err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("peer: status of %s: %w: %v", addr, dht.ErrBadRequest, err)
	}
	return &st, nil
}

// Call calls method on the peer at addr, for methods that packages above
// the store serve on peers (sipvm.MethodNotifyMailbox). A peer that does
// not serve it answers dht.ErrUnknownMethod.
func (c *Client) Call(ctx context.Context, addr, method string, body []byte) ([]byte, error) {
	return c.tr.Call(ctx, dht.Peer{Addr: addr}, method, body)
}

// Close closes the client's connections.
func (c *Client) Close() error { return c.tr.Close() }
