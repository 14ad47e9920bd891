package store

import (
	"bytes"
	"fmt"
	"time"
)

// Entry is one named value of a record. Replicas keep, for each name, the
// entry that wins under Merge.
type Entry struct {
	// Name identifies the entry within its record: 1 to MaxNameSize bytes,
	// any bytes.
	Name string

	// Value is the entry's payload, at most MaxValueSize bytes, possibly
	// empty. A tombstone has no value.
	Value []byte

	// Version orders writes of the same name: the higher version wins.
	// Writers pick it (a timestamp, a counter); ties are broken as Merge
	// documents.
	Version uint64

	// Writer is the node ID of the peer that wrote the entry.
	Writer [32]byte

	// Expires is when the entry disappears by itself; the zero time means
	// never. It must be zero or lie between 1970 and 2262. Stores drop an
	// expired entry on their own.
	Expires time.Time

	// Deleted marks a tombstone: the entry was removed at Version. A
	// tombstone hides older versions from readers and is kept so replicas
	// learn of the removal. It expires like any entry, and the caller sets
	// its Expires: it must outlive every entry it kills (at least as late
	// as the latest Expires any older version may have, or zero), otherwise
	// an old version still held by a lagging replica can come back.
	Deleted bool
}

// Unix-nanosecond range a stored Expires must fit in.
var (
	minExpires = time.Unix(0, 1)
	maxExpires = time.Unix(0, 1<<63-1)
)

// Validate reports whether e may be stored: a name of 1 to MaxNameSize
// bytes, a value of at most MaxValueSize bytes, no value on a tombstone,
// and an Expires that is zero or between 1970 and 2262. The error wraps
// ErrInvalid and names the rule broken.
func (e Entry) Validate() error {
	switch {
	case e.Name == "":
		return fmt.Errorf("%w: empty entry name", ErrInvalid)
	case len(e.Name) > MaxNameSize:
		return fmt.Errorf("%w: entry name is %d bytes, the limit is %d", ErrInvalid, len(e.Name), MaxNameSize)
	case len(e.Value) > MaxValueSize:
		return fmt.Errorf("%w: entry %q: value is %d bytes, the limit is %d", ErrInvalid, e.Name, len(e.Value), MaxValueSize)
	case e.Deleted && len(e.Value) > 0:
		return fmt.Errorf("%w: entry %q: a tombstone carries no value", ErrInvalid, e.Name)
	case !e.Expires.IsZero() && (e.Expires.Before(minExpires) || e.Expires.After(maxExpires)):
		return fmt.Errorf("%w: entry %q: expiry %s is outside 1970–2262", ErrInvalid, e.Name, e.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// Equal reports whether e and o are the same version of an entry: equal
// fields, Expires compared as instants, a nil Value equal to an empty one.
// Equal(o) is Compare(e, o) == 0.
func (e Entry) Equal(o Entry) bool { return Compare(e, o) == 0 }

// Compare orders two versions of an entry; Merge keeps the greater. It
// compares, in turn, until one differs:
//
//  1. Version: the higher is greater;
//  2. Writer, byte-wise: the higher is greater;
//  3. Deleted: a tombstone is greater than a live entry;
//  4. Value, byte-wise (bytes.Compare): the higher is greater;
//  5. Expires, as instants: the later is greater, and zero (never) is
//     greater than any time;
//  6. Name: the higher is greater, so the order stays total even for
//     entries of different names, which Merge is not meant for.
//
// It returns -1, 0 or +1. Compare is a total order on entries up to Equal.
func Compare(a, b Entry) int {
	if a.Version != b.Version {
		if a.Version > b.Version {
			return 1
		}
		return -1
	}
	if c := bytes.Compare(a.Writer[:], b.Writer[:]); c != 0 {
		return c
	}
	if a.Deleted != b.Deleted {
		if a.Deleted {
			return 1
		}
		return -1
	}
	if c := bytes.Compare(a.Value, b.Value); c != 0 {
		return c
	}
	if c := compareExpires(a.Expires, b.Expires); c != 0 {
		return c
	}
	switch {
	case a.Name > b.Name:
		return 1
	case a.Name < b.Name:
		return -1
	}
	return 0
}

// Merge returns whichever of two versions of the same entry wins: the
// greater under Compare. It is pure and deterministic, and it is
// commutative, associative and idempotent (up to Equal), so replicas that
// exchange entries in any order, any number of times, agree.
func Merge(a, b Entry) Entry {
	if Compare(a, b) >= 0 {
		return a
	}
	return b
}

// compareExpires orders expiry times as instants, the zero time (never)
// after all others.
func compareExpires(a, b time.Time) int {
	switch az, bz := a.IsZero(), b.IsZero(); {
	case az && bz:
		return 0
	case az:
		return 1
	case bz:
		return -1
	}
	return a.Compare(b)
}
