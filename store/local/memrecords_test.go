package local

import (
	"testing"
	"time"

	"github.com/voicering/voicering/store"
)

// The measurement build's memory table (memrecords.go) must merge as the
// store does, or MEMORY_RECORDS=1 would measure a different registrar:
// a newer version wins, an older one is not written, reads leave out
// expired entries and tombstones and take the newer of memory and disk.
func TestMemRecordsMergeLikeTheStore(t *testing.T) {
	now := time.Now()
	key := store.Key{1}
	e := func(name, value string, version uint64, expires time.Time) store.Entry {
		return store.Entry{Name: name, Value: []byte(value), Version: version, Expires: expires}
	}
	var m memRecords
	rs := m.merge([]store.RecordMerge{
		{Key: key, Entries: []store.Entry{e("b", "b2", 2, now.Add(time.Hour)), e("a", "a1", 1, now.Add(time.Hour))}},
		{Key: key, Entries: []store.Entry{e("b", "b1", 1, now.Add(time.Hour)), e("gone", "x", 1, now.Add(-time.Second))}},
	})
	if rs[0].Written != 2 || rs[1].Written != 1 {
		t.Fatalf("written %d and %d, want 2 and 1 (the older b is not written)", rs[0].Written, rs[1].Written)
	}
	m.merge([]store.RecordMerge{{Key: key, Entries: []store.Entry{{Name: "a", Version: 3, Deleted: true, Expires: now.Add(time.Hour)}}}})

	onDisk := []store.Entry{e("b", "b-disk", 5, now.Add(time.Hour)), e("c", "c-disk", 1, now.Add(time.Hour))}
	got := m.overlay(key, onDisk, false, now)
	want := []string{"b=b-disk", "c=c-disk"} // a deleted, gone expired, b newer on disk
	if len(got) != len(want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	for i, g := range got {
		if s := g.Name + "=" + string(g.Value); s != want[i] {
			t.Errorf("entry %d is %s, want %s", i, s, want[i])
		}
	}
	if got := m.overlay(key, nil, true, now); len(got) != 2 || got[0].Name != "a" || !got[0].Deleted {
		t.Errorf("read with tombstones %v, want the tombstone of a and b", got)
	}
	if got := m.overlay(store.Key{2}, nil, false, now); len(got) != 0 {
		t.Errorf("another key read %v, want nothing", got)
	}
}
