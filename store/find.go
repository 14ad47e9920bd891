package store

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/voicering/voicering/coding"
)

// ShardFinder is a store that finds a segment's shard in one call: a
// remote store, which would otherwise need three round trips when a ring
// has shifted since the put (ask for the shard, list, ask again).
type ShardFinder interface {
	// FindShard returns shard id when it is stored, else the first stored
	// shard of the same storage index and segment, with its ID.
	// Errors: ErrNotFound when the store holds no shard of the segment;
	// the errors of GetShard and ListShards.
	FindShard(ctx context.Context, id ShardID) (ShardID, []byte, coding.Hash, error)
}

// FindShard returns shard id of s when stored, else the first stored shard
// of the same segment, as ShardFinder says; in one call when s is a
// ShardFinder, else by GetShard and ListShards.
func FindShard(ctx context.Context, s Shards, id ShardID) (ShardID, []byte, coding.Hash, error) {
	if f, ok := s.(ShardFinder); ok {
		return f.FindShard(ctx, id)
	}
	return FindShardSlowly(ctx, s, id)
}

// FindShardSlowly is FindShard by GetShard and ListShards, for a store
// that cannot find a shard in one call (or a peer too old to).
func FindShardSlowly(ctx context.Context, s Shards, id ShardID) (ShardID, []byte, coding.Hash, error) {
	return FindShardIn(ctx, s, id, s.ListShards(ctx, id.Index))
}

// FindShardIn is FindShard on a store s whose listing of id's storage
// index (or of just its segment) is listed: shard id when s holds it, else
// the first listed shard of id's segment that s can still read. A store
// implements ShardFinder with it by passing its narrowest listing.
func FindShardIn(ctx context.Context, s ShardGetter, id ShardID, listed iter.Seq2[ShardInfo, error]) (ShardID, []byte, coding.Hash, error) {
	data, hash, err := s.GetShard(ctx, id)
	if !errors.Is(err, ErrNotFound) {
		return id, data, hash, err
	}
	for in, err := range listed {
		if err != nil {
			return ShardID{}, nil, coding.Hash{}, err
		}
		if in.ID.Segment < id.Segment || in.ID == id {
			continue
		}
		if in.ID.Segment > id.Segment {
			break // listings are ordered
		}
		data, hash, err := s.GetShard(ctx, in.ID)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since the listing
		}
		return in.ID, data, hash, err
	}
	return ShardID{}, nil, coding.Hash{}, fmt.Errorf("find a shard of segment %d of %s: %w", id.Segment, id.Index, ErrNotFound)
}
