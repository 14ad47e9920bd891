package local

import (
	"context"
	"errors"
	"fmt"
	"iter"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
)

// listPage is how many items a listing reads per transaction.
const listPage = 256

// PutShard implements store.ShardPutter.
func (s *Store) PutShard(ctx context.Context, id store.ShardID, hash coding.Hash, data []byte) error {
	if err := s.putShard(ctx, id, hash, data); err != nil {
		return fmt.Errorf("store: put shard %s: %w", id, err)
	}
	return nil
}

func (s *Store) putShard(ctx context.Context, id store.ShardID, hash coding.Hash, data []byte) error {
	if len(data) > store.MaxShardSize {
		return fmt.Errorf("%w: shard is %d bytes, the limit is %d", store.ErrInvalid, len(data), store.MaxShardSize)
	}
	if got := coding.HashOf(data); got != hash {
		return fmt.Errorf("%w: data hashes to %s, want %s", store.ErrHashMismatch, got, hash)
	}
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	metaKey := shardMetaKey(id)
	return s.update(ctx, synced, func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			var stored coding.Hash
			if err := item.Value(func(v []byte) error {
				stored, _, err = decodeShardMeta(v)
				return err
			}); err != nil {
				return err
			}
			if stored != hash {
				return fmt.Errorf("%w: stored hash %s, given %s", store.ErrExists, stored, hash)
			}
			return nil // already stored
		}
		if err := txn.Set(metaKey, encodeShardMeta(hash, int64(len(data)))); err != nil {
			return err
		}
		// badger keeps a reference to data until the commit: no copy.
		return txn.Set(shardDataKey(id), data)
	})
}

// GetShard implements store.ShardGetter. It copies the data out of the
// database once and checks its hash before returning it.
func (s *Store) GetShard(ctx context.Context, id store.ShardID) ([]byte, coding.Hash, error) {
	data, hash, err := s.getShard(ctx, id)
	if err != nil {
		return nil, coding.Hash{}, fmt.Errorf("store: get shard %s: %w", id, err)
	}
	return data, hash, nil
}

func (s *Store) getShard(ctx context.Context, id store.ShardID) ([]byte, coding.Hash, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, coding.Hash{}, err
	}
	defer end()
	var (
		data []byte
		hash coding.Hash
		size int64
	)
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(shardMetaKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error {
			hash, size, err = decodeShardMeta(v)
			return err
		}); err != nil {
			return err
		}
		item, err = txn.Get(shardDataKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: the shard's data is missing; delete the shard so repair rebuilds it", store.ErrCorrupt)
		}
		if err != nil {
			return err
		}
		data, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, coding.Hash{}, err
	}
	if int64(len(data)) != size {
		return nil, coding.Hash{}, fmt.Errorf("%w: %d bytes stored, want %d; delete the shard so repair rebuilds it", store.ErrCorrupt, len(data), size)
	}
	if got := coding.HashOf(data); got != hash {
		return nil, coding.Hash{}, fmt.Errorf("%w: stored bytes hash to %s, want %s; delete the shard so repair rebuilds it", store.ErrCorrupt, got, hash)
	}
	return data, hash, nil
}

// DeleteShard implements store.ShardDeleter.
func (s *Store) DeleteShard(ctx context.Context, id store.ShardID) error {
	if err := s.deleteShard(ctx, id); err != nil {
		return fmt.Errorf("store: delete shard %s: %w", id, err)
	}
	return nil
}

func (s *Store) deleteShard(ctx context.Context, id store.ShardID) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	metaKey := shardMetaKey(id)
	return s.update(ctx, synced, func(txn *badger.Txn) error {
		if _, err := txn.Get(metaKey); errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if err := txn.Delete(metaKey); err != nil {
			return err
		}
		return txn.Delete(shardDataKey(id))
	})
}

// ListShards implements store.ShardLister.
func (s *Store) ListShards(ctx context.Context, index coding.StorageIndex) iter.Seq2[store.ShardInfo, error] {
	prefix := append(append([]byte(nil), shardMetaPrefix...), index[:]...)
	return s.listShards(ctx, prefix, "list shards of "+index.String())
}

// FindShard implements store.ShardFinder: shard id, or the first stored
// shard of its segment, found by one seek.
func (s *Store) FindShard(ctx context.Context, id store.ShardID) (store.ShardID, []byte, coding.Hash, error) {
	prefix := shardMetaKey(id)[:shardKeyLen-2] // meta prefix, index, segment
	return store.FindShardIn(ctx, s, id, s.listShards(ctx, prefix, "find a shard of "+id.String()))
}

// ListAllShards implements store.ShardLister.
func (s *Store) ListAllShards(ctx context.Context) iter.Seq2[store.ShardInfo, error] {
	return s.listShards(ctx, shardMetaPrefix, "list shards")
}

// listShards yields the shards whose meta key starts with prefix, reading
// listPage of them per transaction and yielding them outside it.
func (s *Store) listShards(ctx context.Context, prefix []byte, what string) iter.Seq2[store.ShardInfo, error] {
	return func(yield func(store.ShardInfo, error) bool) {
		start := prefix
		for start != nil {
			var page []store.ShardInfo
			var err error
			page, start, err = s.shardPage(ctx, prefix, start)
			if err != nil {
				yield(store.ShardInfo{}, fmt.Errorf("store: %s: %w", what, err))
				return
			}
			for _, info := range page {
				if err := ctx.Err(); err != nil {
					yield(store.ShardInfo{}, fmt.Errorf("store: %s: %w", what, err))
					return
				}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// shardPage reads up to listPage shard metas with keys ≥ start under
// prefix. next is where the following page starts, nil after the last.
func (s *Store) shardPage(ctx context.Context, prefix, start []byte) (page []store.ShardInfo, next []byte, err error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer end()
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			if len(page) == listPage {
				next = item.KeyCopy(nil)
				return nil
			}
			id, err := decodeShardKey(item.Key())
			if err != nil {
				return err
			}
			info := store.ShardInfo{ID: id}
			if err := item.Value(func(v []byte) error {
				info.Hash, info.Size, err = decodeShardMeta(v)
				return err
			}); err != nil {
				return fmt.Errorf("shard %s: %w", id, err)
			}
			page = append(page, info)
		}
		return nil
	})
	return page, next, err
}
