package dht

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
)

// ProtocolVersion is the newest version of the ring protocol this package
// speaks. Every request carries the version it is written in.
const ProtocolVersion = 1

// DefaultMaxMessage bounds request and response bodies unless configured
// otherwise: room for a 1 MiB+ shard with plenty to spare.
const DefaultMaxMessage = 8 << 20

// Errors callers act on. Transports and nodes wrap them with what was being
// done; test with errors.Is.
var (
	// ErrVersion: the peer speaks none of the protocol versions we do.
	ErrVersion = errors.New("dht: no common protocol version")
	// ErrUnknownMethod: the peer has no handler for the method.
	ErrUnknownMethod = errors.New("dht: unknown method")
	// ErrBadRequest: the request body was malformed. Handlers wrap it to
	// have the caller see it.
	ErrBadRequest = errors.New("dht: bad request")
	// ErrTooLarge: a request or response body exceeded the size limit.
	ErrTooLarge = errors.New("dht: message too large")
	// ErrUnreachable: the peer could not be reached (refused, timed out,
	// partitioned).
	ErrUnreachable = errors.New("dht: peer unreachable")
	// ErrPeerID: the peer at the address is not the node we expected, or a
	// certificate claims a node ID that is not its key's.
	ErrPeerID = errors.New("dht: peer is not the expected node")
	// ErrNotAdmitted: a certificate was refused (not Ed25519, or in a
	// closed ring not issued by the ring CA).
	ErrNotAdmitted = errors.New("dht: peer not admitted to the ring")
	// ErrRemote: the peer's handler failed; the RemoteError says how.
	ErrRemote = errors.New("dht: remote handler failed")
	// ErrClosed: the node or transport is closed.
	ErrClosed = errors.New("dht: closed")
	// ErrNoPeers: a lookup ran out of peers to ask.
	ErrNoPeers = errors.New("dht: no reachable peers")
)

// RemoteError is an error answered by a peer. It unwraps to the sentinel
// matching its status (ErrBadRequest, ErrUnknownMethod, ErrTooLarge,
// ErrVersion, ErrNotAdmitted, else ErrRemote).
type RemoteError struct {
	Peer    Peer
	Method  string
	Status  int // HTTP status code
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("dht: %s on %s: status %d: %s", e.Method, e.Peer, e.Status, e.Message)
}

// Unwrap returns the sentinel for the status.
func (e *RemoteError) Unwrap() error {
	switch e.Status {
	case statusBadRequest:
		return ErrBadRequest
	case statusUnknownMethod:
		return ErrUnknownMethod
	case statusTooLarge:
		return ErrTooLarge
	case statusVersion:
		return ErrVersion
	case statusNotAdmitted:
		return ErrNotAdmitted
	}
	return ErrRemote
}

// NewRemoteError returns the error a caller of method on peer sees when
// the peer's handler failed with handlerErr, as transports report it.
func NewRemoteError(peer Peer, method string, handlerErr error) *RemoteError {
	return &RemoteError{Peer: peer, Method: method, Status: statusOf(handlerErr), Message: handlerErr.Error()}
}

// Status codes on the wire (HTTP status codes).
const (
	statusOK            = 200
	statusBadRequest    = 400
	statusNotAdmitted   = 403
	statusUnknownMethod = 404
	statusTooLarge      = 413
	statusFailed        = 500
	statusVersion       = 505 // HTTP Version Not Supported, with the versions served in a header
)

// statusOf maps a handler error to its status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return statusBadRequest
	case errors.Is(err, ErrUnknownMethod):
		return statusUnknownMethod
	case errors.Is(err, ErrTooLarge):
		return statusTooLarge
	case errors.Is(err, ErrVersion):
		return statusVersion
	}
	return statusFailed
}

// Request is one incoming call as a handler sees it.
type Request struct {
	From    ID     // the caller, authenticated by the transport
	Version int    // the protocol version the request is written in
	Method  string // the method called
	Body    []byte // the request body, at most the transport's limit
}

// Handler answers one method. It returns the response body, or an error
// the caller receives as a RemoteError (wrap ErrBadRequest for malformed
// bodies). It must not keep req.Body after returning.
type Handler func(ctx context.Context, req *Request) ([]byte, error)

// Dispatcher routes incoming calls; transports serve one.
type Dispatcher interface {
	// Dispatch answers req, or fails with ErrUnknownMethod when nothing
	// handles req.Method.
	Dispatch(ctx context.Context, req *Request) ([]byte, error)
}

// Caller calls methods on other peers.
type Caller interface {
	// Call sends body to method on peer to and returns the response body.
	// If to.ID is not zero the answering peer must authenticate as that
	// node (ErrPeerID otherwise). Errors wrap ErrUnreachable, ErrPeerID,
	// ErrNotAdmitted, ErrVersion, ErrTooLarge or a *RemoteError, or are
	// the context's error.
	Call(ctx context.Context, to Peer, method string, body []byte) ([]byte, error)
}

// Transport is what a Node needs from the network: the TLS transport in
// this package and the in-memory network in dht/memnet both provide it.
type Transport interface {
	Caller
	// Local returns the node this transport authenticates as and the
	// address it listens on ("" for a client that does not listen).
	Local() Peer
	// Serve answers incoming calls with d until ctx ends, then returns
	// nil; it returns an error only if serving fails.
	Serve(ctx context.Context, d Dispatcher) error
}

// Mux is a registry of handlers by method name. Each Node owns one; upper
// layers add their methods to it, so every layer shares one transport.
type Mux struct {
	mu sync.RWMutex
	m  map[string]Handler
}

var _ Dispatcher = (*Mux)(nil)

// Handle registers h for method, replacing any earlier handler.
func (m *Mux) Handle(method string, h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]Handler)
	}
	m.m[method] = h
}

// Dispatch calls the handler registered for req.Method.
func (m *Mux) Dispatch(ctx context.Context, req *Request) ([]byte, error) {
	m.mu.RLock()
	h := m.m[req.Method]
	m.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownMethod, req.Method)
	}
	return h(ctx, req)
}

// Traffic counts payload bytes (method name plus body) and calls.
type Traffic struct {
	Sent     uint64 `json:"sent"`
	Received uint64 `json:"received"`
	Calls    uint64 `json:"calls"` // calls made and served
}

// Meter counts traffic per remote peer. The zero value is ready to use.
type Meter struct {
	mu    sync.Mutex
	total Traffic
	peers map[ID]Traffic
}

// Add counts one call exchanged with peer.
func (m *Meter) Add(peer ID, sent, received int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peers == nil {
		m.peers = make(map[ID]Traffic)
	}
	t := m.peers[peer]
	t.Sent += uint64(sent)
	t.Received += uint64(received)
	t.Calls++
	m.peers[peer] = t
	m.total.Sent += uint64(sent)
	m.total.Received += uint64(received)
	m.total.Calls++
}

// Total returns the traffic with all peers.
func (m *Meter) Total() Traffic {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total
}

// PerPeer returns a copy of the traffic by peer.
func (m *Meter) PerPeer() map[ID]Traffic {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.peers)
}
