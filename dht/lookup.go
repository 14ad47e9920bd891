package dht

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// LookupStats describes one lookup.
type LookupStats struct {
	// Hops is the number of sequential request rounds on the path that
	// produced the answer (0: the asking node knew it), plus one per
	// extension beyond the answering peer's successor list.
	Hops int `json:"hops"`
	// Calls is the number of requests sent, including hedged and failed
	// ones.
	Calls int `json:"calls"`
	// Failures is the number of requests that failed.
	Failures int `json:"failures"`
}

// maxLookupCalls bounds the requests of one lookup.
const maxLookupCalls = 64

// finder is what an iterative lookup needs from whoever runs it: a Node
// (which feeds its failure detector) or a Client.
type finder interface {
	// find asks to for key's n successors or closer peers.
	find(ctx context.Context, to Peer, key ID, n int) (findResp, error)
	// hedge is how long to wait for to before also asking the next peer.
	hedge(to Peer) time.Duration
}

type candidate struct {
	p     Peer
	depth int // hops from the starting contacts
	asked bool
}

type findResult struct {
	c    *candidate
	resp findResp
	err  error
}

// iterate runs an iterative lookup of key's first n successors starting
// from starts. It keeps one request in flight and adds another, up to
// alpha, each time a response brings closer peers while others are
// pending, or when the newest request has not answered within its hedge
// time; a failed request is replaced at once. The first answer that
// names the key's successors ends the lookup; pending requests are
// cancelled and joined before iterate returns.
func iterate(ctx context.Context, f finder, key ID, n, alpha int, starts []Peer) ([]Peer, LookupStats, error) {
	var st LookupStats
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	cands := map[Peer]*candidate{}
	byID := map[ID]bool{}
	add := func(p Peer, depth int) {
		if !p.ID.IsZero() {
			if byID[p.ID] {
				return
			}
			byID[p.ID] = true
		}
		if _, ok := cands[p]; !ok {
			cands[p] = &candidate{p: p, depth: depth}
		}
	}
	for _, p := range starts {
		add(p, 0)
	}
	results := make(chan findResult, maxLookupCalls)
	inflight := 0
	var errs []error
	hedge := time.NewTimer(time.Hour)
	defer hedge.Stop()

	launch := func() bool {
		if st.Calls >= maxLookupCalls {
			return false
		}
		var best *candidate
		for _, c := range cands {
			if !c.asked && (best == nil || closer(c.p, best.p, key)) {
				best = c
			}
		}
		if best == nil {
			return false
		}
		best.asked = true
		inflight++
		st.Calls++
		wg.Go(func() {
			resp, err := f.find(ctx, best.p, key, n)
			results <- findResult{c: best, resp: resp, err: err}
		})
		hedge.Reset(f.hedge(best.p))
		return true
	}

	for {
		if inflight == 0 && !launch() {
			err := errors.Join(errs...)
			if st.Calls >= maxLookupCalls {
				err = errors.Join(fmt.Errorf("gave up after %d requests", st.Calls), err)
			}
			if err == nil {
				return nil, st, fmt.Errorf("%w for %s: no peer to ask (is --peer or --join right?)", ErrNoPeers, key.Short())
			}
			return nil, st, fmt.Errorf("%w for %s: %w", ErrNoPeers, key.Short(), err)
		}
		select {
		case <-ctx.Done():
			return nil, st, ctx.Err()
		case <-hedge.C:
			if inflight < alpha {
				launch()
			}
		case r := <-results:
			inflight--
			if r.err != nil {
				st.Failures++
				errs = append(errs, r.err)
				if inflight < alpha {
					launch()
				}
				continue
			}
			if r.resp.Done && len(r.resp.Peers) > 0 {
				st.Hops = r.c.depth + 1
				peers := distinct(r.resp.Peers, n)
				return extend(ctx, f, peers, n, &st)
			}
			for _, p := range r.resp.Peers {
				if !r.c.p.ID.IsZero() && !Between(p.ID, r.c.p.ID, key) {
					continue // not progress: a confused or lying peer
				}
				add(p, r.c.depth+1)
			}
			if inflight < alpha {
				launch()
			}
		}
	}
}

// closer reports whether a is a better next hop towards key than b: it
// precedes key more closely. Peers of unknown ID come last.
func closer(a, b Peer, key ID) bool {
	switch {
	case a.ID.IsZero():
		return false
	case b.ID.IsZero():
		return true
	}
	return Distance(a.ID, key).Compare(Distance(b.ID, key)) < 0
}

// distinct returns the first n peers of ps with distinct IDs.
func distinct(ps []Peer, n int) []Peer {
	out := make([]Peer, 0, min(n, len(ps)))
	for _, p := range ps {
		if len(out) == n {
			break
		}
		if !slices.ContainsFunc(out, func(q Peer) bool { return q.ID == p.ID }) {
			out = append(out, p)
		}
	}
	return out
}

// extend completes peers to n entries by asking the last one for its own
// successors, for n longer than a successor list. A peer that fails to
// answer is dropped from the answer and the one before it is asked, for as
// many more successors as peers were dropped: right after peers die, every
// successor list still names them, and only asking past them reaches the
// live peers beyond. It stops when the ring wraps around (fewer than n
// peers exist), and fails only if no peer of the list answers.
func extend(ctx context.Context, f finder, peers []Peer, n int, st *LookupStats) ([]Peer, LookupStats, error) {
	failed := map[ID]bool{}
	var lastErr error
	for len(peers) < n && st.Calls < maxLookupCalls {
		j := len(peers) - 1
		if j < 0 {
			if lastErr == nil {
				return nil, *st, fmt.Errorf("%w: the lookup found no peer", ErrNoPeers)
			}
			return nil, *st, fmt.Errorf("%w: extending the successor list: %w", ErrNoPeers, lastErr)
		}
		var resp findResp
		var err error
		for range 2 { // a second try gets a doubled timeout
			st.Calls++
			resp, err = f.find(ctx, peers[j], peers[j].ID, min(n-j+len(failed), maxLookupN))
			if err == nil {
				break
			}
			st.Failures++
			if ctx.Err() != nil {
				return peers, *st, ctx.Err()
			}
		}
		if err != nil {
			failed[peers[j].ID] = true
			peers, lastErr = peers[:j], err // dead (or unreachable): ask the one before
			continue
		}
		st.Hops++
		next := slices.Clone(peers)
		grew := false
		for _, p := range resp.Peers {
			if len(next) == n {
				break
			}
			if failed[p.ID] {
				continue
			}
			if slices.ContainsFunc(next, func(q Peer) bool { return q.ID == p.ID }) {
				if p.ID == next[j].ID {
					continue
				}
				break // wrapped around the ring
			}
			next = append(next, p)
			grew = true
		}
		peers = next
		if !grew {
			break // the ring has no more live peers than these
		}
	}
	return peers, *st, nil
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Caller carries the client's calls, e.g. a TLSTransport without a
	// listen address. Required.
	Caller Caller
	// Bootstrap lists addresses of ring peers to start lookups from.
	// Required.
	Bootstrap []string
	// Alpha bounds the requests a lookup keeps in flight. Zero: 3.
	Alpha int
	// Timeout bounds each request and is the hedge delay before asking
	// another peer. Zero: 2s.
	Timeout time.Duration
}

// Client looks keys up in a ring it does not belong to (a `voicering put`
// process): it asks peers iteratively, starting from the bootstrap
// addresses, and then talks to the peers found directly.
type Client struct {
	cfg ClientConfig
}

// NewClient checks cfg and fills its defaults.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Caller == nil {
		return nil, errors.New("dht: client: no Caller")
	}
	if len(cfg.Bootstrap) == 0 {
		return nil, errors.New("dht: client: no bootstrap address")
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = 3
	}
	if cfg.Alpha < 0 {
		return nil, fmt.Errorf("dht: client: negative Alpha %d", cfg.Alpha)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	cfg.Bootstrap = slices.Clone(cfg.Bootstrap)
	return &Client{cfg: cfg}, nil
}

// Lookup returns the first n distinct peers clockwise from key (fewer if
// the ring is smaller), and how the lookup went.
func (c *Client) Lookup(ctx context.Context, key ID, n int) ([]Peer, LookupStats, error) {
	if n < 1 || n > maxLookupN {
		return nil, LookupStats{}, fmt.Errorf("dht: lookup: n = %d, want 1..%d", n, maxLookupN)
	}
	starts := make([]Peer, len(c.cfg.Bootstrap))
	for i, a := range c.cfg.Bootstrap {
		starts[i] = Peer{Addr: a}
	}
	peers, st, err := iterate(ctx, c, key, n, c.cfg.Alpha, starts)
	if err != nil {
		return nil, st, fmt.Errorf("dht: lookup %s: %w", key.Short(), err)
	}
	return peers, st, nil
}

func (c *Client) find(ctx context.Context, to Peer, key ID, n int) (findResp, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	b, err := c.cfg.Caller.Call(ctx, to, methodFind, findReq{Key: key, N: n}.encode())
	if err != nil {
		return findResp{}, err
	}
	return decodeFindResp(b)
}

func (c *Client) hedge(Peer) time.Duration { return c.cfg.Timeout }
