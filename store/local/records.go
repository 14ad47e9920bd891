package local

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/voicering/voicering/store"
)

// MergeRecord implements store.RecordMerger. Entries are written with a
// badger TTL from their Expires, so badger drops them once expired.
// Concurrent merges share transactions (store.Coalescer): soft-state
// merges with each other, durable ones with each other and one fsync.
func (s *Store) MergeRecord(ctx context.Context, key store.Key, entries []store.Entry) (int, error) {
	batch, err := collapse(entries)
	if err != nil {
		return 0, fmt.Errorf("store: merge record %s: %w", key, err)
	}
	co := s.softMerges
	if recordDurability(batch, time.Now(), s.softExpiry) == synced {
		co = s.durableMerges
	}
	return co.MergeRecord(ctx, key, batch)
}

// MergeRecords implements store.BatchMerger: the valid merges of ms are
// written in one transaction, synced if any of them must be.
func (s *Store) MergeRecords(ctx context.Context, ms []store.RecordMerge) []store.MergeResult {
	rs := make([]store.MergeResult, len(ms))
	valid := make([]store.RecordMerge, 0, len(ms))
	at := make([]int, 0, len(ms)) // valid[j] is ms[at[j]]
	for i, m := range ms {
		b, err := collapse(m.Entries)
		if err != nil {
			rs[i].Err = fmt.Errorf("store: merge record %s: %w", m.Key, err)
			continue
		}
		valid = append(valid, store.RecordMerge{Key: m.Key, Entries: b})
		at = append(at, i)
	}
	for j, r := range s.mergeCollapsed(ctx, valid) {
		rs[at[j]] = r
	}
	return rs
}

// mergeCollapsed writes merges whose entries collapse has checked and
// merged, in one transaction, synced if any of them must be. Should that
// transaction fail (too big, a corrupt entry, conflicts past the
// retries), each merge gets one of its own, so that every merge fails or
// succeeds on its own.
func (s *Store) mergeCollapsed(ctx context.Context, ms []store.RecordMerge) []store.MergeResult {
	rs := make([]store.MergeResult, len(ms))
	if len(ms) == 0 {
		return rs
	}
	d, now := unsynced, time.Now()
	for _, m := range ms {
		if recordDurability(m.Entries, now, s.softExpiry) == synced {
			d = synced
		}
	}
	if memoryRecords && d == unsynced {
		return s.mem.merge(ms)
	}
	end, err := s.begin(ctx)
	if err == nil {
		err = s.update(ctx, d, func(txn *badger.Txn) error {
			for i, m := range ms {
				n, err := mergeIn(txn, m.Key, m.Entries)
				if err != nil {
					return err
				}
				rs[i].Written = n
			}
			return nil
		})
		end()
	}
	if err != nil && len(ms) > 1 && ctx.Err() == nil {
		for i, m := range ms {
			rs[i].Written, rs[i].Err = s.mergeRecord(ctx, m.Key, m.Entries)
		}
	} else if err != nil {
		for i := range rs {
			rs[i] = store.MergeResult{Err: err}
		}
	}
	for i, m := range ms {
		if rs[i].Err != nil {
			rs[i].Err = fmt.Errorf("store: merge record %s: %w", m.Key, rs[i].Err)
		}
	}
	return rs
}

// mergeRecord merges a collapsed batch in a transaction of its own.
func (s *Store) mergeRecord(ctx context.Context, key store.Key, batch []store.Entry) (int, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	var written int
	err = s.update(ctx, recordDurability(batch, time.Now(), s.softExpiry), func(txn *badger.Txn) error {
		var err error
		written, err = mergeIn(txn, key, batch)
		return err
	})
	return written, err
}

// mergeIn merges a collapsed batch into record key within txn and returns
// how many entries it wrote.
func mergeIn(txn *badger.Txn, key store.Key, batch []store.Entry) (int, error) {
	written := 0
	for _, e := range batch {
		k := entryKey(key, e.Name)
		item, err := txn.Get(k)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return 0, err
		default:
			var stored store.Entry
			if err := item.Value(func(v []byte) error {
				stored, err = decodeEntry(e.Name, v)
				return err
			}); err != nil {
				return 0, err
			}
			if store.Compare(e, stored) <= 0 {
				continue
			}
		}
		be := badger.NewEntry(k, encodeEntry(e))
		be.ExpiresAt = ttl(e.Expires)
		if err := txn.SetEntry(be); err != nil {
			return 0, err
		}
		written++
	}
	return written, nil
}

// collapse validates a batch and merges entries of the same name, returning
// one entry per name, sorted by name.
func collapse(entries []store.Entry) ([]store.Entry, error) {
	if len(entries) > store.MaxBatchEntries {
		return nil, fmt.Errorf("%w: batch of %d entries, the limit is %d", store.ErrInvalid, len(entries), store.MaxBatchEntries)
	}
	size := 0
	byName := make(map[string]store.Entry, len(entries))
	for i, e := range entries {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		size += len(e.Name) + len(e.Value)
		if old, ok := byName[e.Name]; ok {
			e = store.Merge(old, e)
		}
		byName[e.Name] = e
	}
	if size > store.MaxBatchSize {
		return nil, fmt.Errorf("%w: batch of %d bytes of names and values, the limit is %d", store.ErrInvalid, size, store.MaxBatchSize)
	}
	batch := make([]store.Entry, 0, len(byName))
	for _, e := range byName {
		batch = append(batch, e)
	}
	slices.SortFunc(batch, func(a, b store.Entry) int { return strings.Compare(a.Name, b.Name) })
	return batch, nil
}

// GetRecord implements store.RecordGetter.
func (s *Store) GetRecord(ctx context.Context, key store.Key) ([]store.Entry, error) {
	entries, err := s.getRecord(ctx, key, false)
	if err != nil {
		return nil, fmt.Errorf("store: get record %s: %w", key, err)
	}
	return entries, nil
}

// GetRecordState implements store.RecordGetter.
func (s *Store) GetRecordState(ctx context.Context, key store.Key) ([]store.Entry, error) {
	entries, err := s.getRecord(ctx, key, true)
	if err != nil {
		return nil, fmt.Errorf("store: get record state %s: %w", key, err)
	}
	return entries, nil
}

func (s *Store) getRecord(ctx context.Context, key store.Key, tombstones bool) ([]store.Entry, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	// badger expires to the second, rounded up; filter to the nanosecond.
	now := time.Now()
	var entries []store.Entry
	prefix := recordPrefix(key)
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			_, name, err := decodeEntryKey(item.Key())
			if err != nil {
				return err
			}
			var e store.Entry
			if err := item.Value(func(v []byte) error {
				e, err = decodeEntry(name, v)
				return err
			}); err != nil {
				return err
			}
			if (e.Deleted && !tombstones) || (!e.Expires.IsZero() && !now.Before(e.Expires)) {
				continue
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if memoryRecords {
		entries = s.mem.overlay(key, entries, tombstones, now)
	}
	if len(entries) == 0 {
		return nil, store.ErrNotFound
	}
	return entries, nil
}

// RecordKeys implements store.RecordLister.
func (s *Store) RecordKeys(ctx context.Context, from store.Key) iter.Seq2[store.Key, error] {
	return func(yield func(store.Key, error) bool) {
		start, ok := &from, true
		for ok {
			var page []store.Key
			var err error
			page, start, err = s.keyPage(ctx, *start)
			if err != nil {
				yield(store.Key{}, fmt.Errorf("store: list record keys: %w", err))
				return
			}
			for _, k := range page {
				if err := ctx.Err(); err != nil {
					yield(store.Key{}, fmt.Errorf("store: list record keys: %w", err))
					return
				}
				if !yield(k, nil) {
					return
				}
			}
			ok = start != nil
		}
	}
}

// keyPage reads up to listPage record keys ≥ from, seeking past the entries
// of each key. next is where the following page starts, nil after the last.
func (s *Store) keyPage(ctx context.Context, from store.Key) (page []store.Key, next *store.Key, err error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer end()
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: recordKeyPrefix})
		defer it.Close()
		for it.Seek(recordPrefix(from)); it.ValidForPrefix(recordKeyPrefix); {
			key, _, err := decodeEntryKey(it.Item().Key())
			if err != nil {
				return err
			}
			if len(page) == listPage {
				next = &key
				return nil
			}
			page = append(page, key)
			after, ok := successor(key)
			if !ok {
				return nil
			}
			it.Seek(recordPrefix(after))
		}
		return nil
	})
	return page, next, err
}

// successor returns the key right after k, false if k is the last key.
func successor(k store.Key) (store.Key, bool) {
	for i := len(k) - 1; i >= 0; i-- {
		k[i]++
		if k[i] != 0 {
			return k, true
		}
	}
	return k, false
}
