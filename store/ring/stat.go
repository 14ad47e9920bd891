package ring

import (
	"context"
	"sync"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
)

// ShardPlace is where one shard of a segment was found.
type ShardPlace struct {
	Shard    int      `json:"shard"`
	Peer     dht.Peer `json:"peer"`
	Position int      `json:"position"` // in the placement list; ≥ Total is a spare
	Good     bool     `json:"good"`     // its stored hash matches the manifest
}

// SegmentStat is the state of one segment on the ring.
type SegmentStat struct {
	Segment     int          `json:"segment"`
	Placement   []dht.Peer   `json:"placement"`             // Total peers, then spares
	Unreachable []dht.Peer   `json:"unreachable,omitempty"` // placement peers that did not answer
	Shards      []ShardPlace `json:"shards"`
	Good        int          `json:"good"`    // distinct shard indexes found good
	Missing     []int        `json:"missing"` // indexes found nowhere good
}

// ObjectStat says where every shard of an object lives.
type ObjectStat struct {
	Manifest *coding.Manifest `json:"-"`
	Size     int64            `json:"size"`
	Type     string           `json:"content_type"`
	Scheme   string           `json:"scheme"`
	Segments []SegmentStat    `json:"segments"`
}

// Stat finds every shard of the object c names on its placement peers (and
// spares), asking them all. Errors: ErrNotFound; record errors.
func (o *Objects) Stat(ctx context.Context, c coding.Cap) (*ObjectStat, error) {
	m, err := o.Manifest(ctx, c)
	if err != nil {
		return nil, err
	}
	si := c.StorageIndex()
	st := &ObjectStat{Manifest: m, Size: m.Size, Type: m.ContentType, Scheme: m.Scheme.String(), Segments: make([]SegmentStat, len(m.ShardHashes))}
	var wg sync.WaitGroup
	for s := range m.ShardHashes {
		wg.Go(func() { st.Segments[s] = o.statSegment(ctx, si, m, s) })
	}
	wg.Wait()
	return st, nil
}

func (o *Objects) statSegment(ctx context.Context, si coding.StorageIndex, m *coding.Manifest, s int) SegmentStat {
	ss := SegmentStat{Segment: s}
	peers, _, err := o.cfg.Locator.Lookup(ctx, PlacementKey(si, s), m.Scheme.Total+o.cfg.Spare)
	if err != nil {
		ss.Missing = allIndexes(m.Scheme.Total)
		return ss
	}
	ss.Placement = peers
	found := make([][]ShardPlace, len(peers))
	failed := make([]bool, len(peers))
	var wg sync.WaitGroup
	for pos, p := range peers {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, o.cfg.CallTimeout)
			defer cancel()
			for in, err := range o.cfg.Dial(p).ListShards(cctx, si) {
				if err != nil {
					failed[pos] = true
					return
				}
				if int(in.ID.Segment) != s {
					continue
				}
				i := int(in.ID.Shard)
				good := i < m.Scheme.Total && in.Hash == m.ShardHashes[s][i]
				found[pos] = append(found[pos], ShardPlace{Shard: i, Peer: p, Position: pos, Good: good})
			}
		})
	}
	wg.Wait()
	have := map[int]bool{}
	for pos := range peers {
		if failed[pos] {
			ss.Unreachable = append(ss.Unreachable, peers[pos])
		}
		for _, sp := range found[pos] {
			ss.Shards = append(ss.Shards, sp)
			if sp.Good {
				have[sp.Shard] = true
			}
		}
	}
	ss.Good = len(have)
	for i := range m.Scheme.Total {
		if !have[i] {
			ss.Missing = append(ss.Missing, i)
		}
	}
	return ss
}

func allIndexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
