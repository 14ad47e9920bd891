package coding

import (
	"errors"
	"fmt"
)

// MaxShards is the largest Total a Scheme may have: Reed–Solomon over
// GF(2^8) has at most 256 distinct evaluation points.
const MaxShards = 256

// ErrBadScheme is wrapped by every error about an invalid Scheme.
var ErrBadScheme = errors.New("invalid coding scheme")

// Scheme says how a segment is coded: into Total shards, any Needed of
// which rebuild it. Total − Needed is how many shards (and so peers) may be
// lost without losing the segment; Total/Needed is the storage overhead.
type Scheme struct {
	Needed int // data shards; 1 ≤ Needed ≤ Total
	Total  int // all shards; Total ≤ MaxShards
}

// DefaultScheme is 4-of-6: any two peers of a segment's six may be lost, for
// 1.5× storage (3-way replication tolerates the same two losses for 3×).
var DefaultScheme = Scheme{Needed: 4, Total: 6}

// Validate reports whether s can be used, naming the numbers when not.
func (s Scheme) Validate() error {
	switch {
	case s.Needed < 1:
		return fmt.Errorf("%w: needed is %d, must be at least 1", ErrBadScheme, s.Needed)
	case s.Total < s.Needed:
		return fmt.Errorf("%w: total %d is less than needed %d; total must be at least needed", ErrBadScheme, s.Total, s.Needed)
	case s.Total > MaxShards:
		return fmt.Errorf("%w: total is %d, at most %d shards are possible", ErrBadScheme, s.Total, MaxShards)
	}
	return nil
}

// Parity returns Total − Needed, the number of shards that may be lost.
func (s Scheme) Parity() int { return s.Total - s.Needed }

// String returns the scheme as "needed-of-total", e.g. "4-of-6".
func (s Scheme) String() string { return fmt.Sprintf("%d-of-%d", s.Needed, s.Total) }
