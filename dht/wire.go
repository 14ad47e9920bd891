package dht

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Ring methods served by every Node (protocol version 1).
const (
	methodPing   = "ring.ping"   // empty → empty
	methodState  = "ring.state"  // empty → stateMsg: predecessor and successor list
	methodNotify = "ring.notify" // notifyMsg: "I might be your predecessor" → empty
	methodFind   = "ring.find"   // findReq → findResp
	methodLeave  = "ring.leave"  // stateMsg of the leaving node → empty
)

// Limits on decoded messages.
const (
	maxWirePeers = 256  // peers in one message
	maxWireAddr  = 1024 // bytes in one address
	maxLookupN   = maxWirePeers
)

// The ring messages use a small hand-written binary encoding: fixed
// 32-byte IDs, uvarint lengths and counts, a flags byte. Decoders ignore
// bytes after the fields they know, so a later version may append fields
// that older peers skip.

var errShort = errors.New("truncated")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(max uint64, what string) int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(fmt.Errorf("bad %s", what))
		return 0
	}
	d.b = d.b[n:]
	if v > max {
		d.fail(fmt.Errorf("%s %d over %d", what, v, max))
		return 0
	}
	return int(v)
}

func (d *decoder) id() ID {
	var id ID
	if d.err != nil || len(d.b) < IDSize {
		d.fail(errShort)
		return id
	}
	copy(id[:], d.b)
	d.b = d.b[IDSize:]
	return id
}

func (d *decoder) str(max int, what string) string {
	n := d.uvarint(uint64(max), what+" length")
	if d.err != nil || len(d.b) < n {
		d.fail(errShort)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) peer() Peer { return Peer{ID: d.id(), Addr: d.str(maxWireAddr, "address")} }

func (d *decoder) peers() []Peer {
	n := d.uvarint(maxWirePeers, "peer count")
	if d.err != nil {
		return nil
	}
	ps := make([]Peer, 0, n)
	for range n {
		ps = append(ps, d.peer())
		if d.err != nil {
			return nil
		}
	}
	return ps
}

func appendPeer(b []byte, p Peer) []byte {
	b = append(b, p.ID[:]...)
	b = binary.AppendUvarint(b, uint64(len(p.Addr)))
	return append(b, p.Addr...)
}

func appendPeers(b []byte, ps []Peer) []byte {
	if len(ps) > maxWirePeers {
		ps = ps[:maxWirePeers]
	}
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = appendPeer(b, p)
	}
	return b
}

func wireErr(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrBadRequest, what, err)
}

// findReq asks a peer for the n successors of Key, or for peers closer to it.
type findReq struct {
	Key ID
	N   int
}

func (m findReq) encode() []byte {
	b := append(make([]byte, 0, IDSize+2), m.Key[:]...)
	return binary.AppendUvarint(b, uint64(m.N))
}

func decodeFindReq(b []byte) (findReq, error) {
	d := decoder{b: b}
	m := findReq{Key: d.id(), N: d.uvarint(maxLookupN, "n")}
	if d.err == nil && m.N == 0 {
		d.fail(errors.New("n is 0"))
	}
	if d.err != nil {
		return findReq{}, wireErr("find request", d.err)
	}
	return m, nil
}

// findResp answers a findReq: either Done and Peers are the key's first
// successors, or Peers are closer peers to ask next, closest first.
type findResp struct {
	Done  bool
	Peers []Peer
}

func (m findResp) encode() []byte {
	var flags byte
	if m.Done {
		flags = 1
	}
	return appendPeers([]byte{flags}, m.Peers)
}

func decodeFindResp(b []byte) (findResp, error) {
	d := decoder{b: b}
	m := findResp{Done: d.byte()&1 != 0, Peers: d.peers()}
	if d.err != nil {
		return findResp{}, wireErr("find response", d.err)
	}
	return m, nil
}

// stateMsg is a node's neighbourhood: its predecessor (if any) and its
// successor list. ring.state answers with it; ring.leave carries the
// leaving node's.
type stateMsg struct {
	HasPred    bool
	Pred       Peer
	Successors []Peer
}

func (m stateMsg) encode() []byte {
	var b []byte
	if m.HasPred {
		b = appendPeer([]byte{1}, m.Pred)
	} else {
		b = []byte{0}
	}
	return appendPeers(b, m.Successors)
}

func decodeState(b []byte) (stateMsg, error) {
	d := decoder{b: b}
	var m stateMsg
	m.HasPred = d.byte()&1 != 0
	if m.HasPred {
		m.Pred = d.peer()
	}
	m.Successors = d.peers()
	if d.err != nil {
		return stateMsg{}, wireErr("state", d.err)
	}
	return m, nil
}

// notifyMsg tells a node that the caller (authenticated by the transport)
// listens at Addr and might be its predecessor.
type notifyMsg struct{ Addr string }

func (m notifyMsg) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(len(m.Addr)))
	return append(b, m.Addr...)
}

func decodeNotify(b []byte) (notifyMsg, error) {
	d := decoder{b: b}
	m := notifyMsg{Addr: d.str(maxWireAddr, "address")}
	if d.err == nil && m.Addr == "" {
		d.fail(errors.New("empty address"))
	}
	if d.err != nil {
		return notifyMsg{}, wireErr("notify", d.err)
	}
	return m, nil
}
