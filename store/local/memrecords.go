package local

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voicering/voicering/store"
)

// memRecords holds soft-state record entries in memory instead of badger,
// in binaries built with the tag voicering_memrecords (memoryRecords).
// That build is a measurement, not a store: it tells how much of a
// registration's cost is badger, by leaving badger out of the binding
// writes (testdata/bench/register-vs-kamailio.sh MEMORY_RECORDS=1). Its
// soft state dies with the process and is not listed or handed off.
type memRecords struct {
	mu      sync.Mutex
	entries map[store.Key]map[string]store.Entry
}

// merge merges collapsed soft-state batches, as mergeCollapsed would.
func (m *memRecords) merge(ms []store.RecordMerge) []store.MergeResult {
	rs := make([]store.MergeResult, len(ms))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil {
		m.entries = map[store.Key]map[string]store.Entry{}
	}
	for i, mg := range ms {
		rec := m.entries[mg.Key]
		if rec == nil {
			rec = map[string]store.Entry{}
			m.entries[mg.Key] = rec
		}
		for _, e := range mg.Entries {
			if old, ok := rec[e.Name]; ok && store.Compare(e, old) <= 0 {
				continue
			}
			rec[e.Name] = e
			rs[i].Written++
		}
	}
	return rs
}

// overlay merges the entries held for key into entries read from badger,
// leaving out expired ones, and tombstones unless asked for.
func (m *memRecords) overlay(key store.Key, entries []store.Entry, tombstones bool, now time.Time) []store.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries[key] {
		if (e.Deleted && !tombstones) || (!e.Expires.IsZero() && !now.Before(e.Expires)) {
			continue
		}
		i := 0
		for i < len(entries) && entries[i].Name != e.Name {
			i++
		}
		switch {
		case i == len(entries):
			entries = append(entries, e)
		case store.Compare(e, entries[i]) > 0:
			entries[i] = e
		}
	}
	slices.SortFunc(entries, func(a, b store.Entry) int { return strings.Compare(a.Name, b.Name) })
	return entries
}
