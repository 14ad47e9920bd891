package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/voicering/voicering/store"
)

// randomEntry draws from small domains so that ties on every field are
// common and each tie-break rule gets exercised.
func randomEntry(r *rand.Rand) store.Entry {
	e := store.Entry{
		Name:    []string{"a", "b"}[r.IntN(2)],
		Version: uint64(r.IntN(3)),
		Deleted: r.IntN(2) == 0,
	}
	e.Writer[0] = byte(r.IntN(2))
	if !e.Deleted {
		e.Value = [][]byte{nil, {}, {1}, {1, 0}, {2}}[r.IntN(5)]
	}
	switch r.IntN(3) {
	case 1:
		e.Expires = time.Unix(1700000000, 0)
	case 2:
		// The same instant in another location: must compare equal.
		e.Expires = time.Unix(1700000000, 0).In(time.FixedZone("x", 3600))
	}
	if r.IntN(4) == 0 {
		e.Expires = time.Unix(1800000000, 5)
	}
	return e
}

func TestMergeProperties(t *testing.T) {
	const seed = 20240611
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range 20000 {
		a, b, c := randomEntry(r), randomEntry(r), randomEntry(r)
		if got, want := store.Merge(a, b), store.Merge(b, a); !got.Equal(want) {
			t.Fatalf("seed %d case %d: commutativity: Merge(a, b) = %+v, Merge(b, a) = %+v\na = %+v\nb = %+v", seed, i, got, want, a, b)
		}
		if got, want := store.Merge(store.Merge(a, b), c), store.Merge(a, store.Merge(b, c)); !got.Equal(want) {
			t.Fatalf("seed %d case %d: associativity: got %+v, want %+v\na = %+v\nb = %+v\nc = %+v", seed, i, got, want, a, b, c)
		}
		if got := store.Merge(a, a); !got.Equal(a) {
			t.Fatalf("seed %d case %d: idempotence: Merge(a, a) = %+v, want %+v", seed, i, got, a)
		}
		if got := store.Merge(a, b); !got.Equal(a) && !got.Equal(b) {
			t.Fatalf("seed %d case %d: Merge(a, b) = %+v is neither a nor b", seed, i, got)
		}
		if got, want := store.Compare(a, b), -store.Compare(b, a); got != want {
			t.Fatalf("seed %d case %d: Compare(a, b) = %d, want -Compare(b, a) = %d", seed, i, got, want)
		}
	}
}

func TestMergeRule(t *testing.T) {
	w1, w2 := [32]byte{1}, [32]byte{2}
	t1, t2 := time.Unix(100, 0), time.Unix(200, 0)
	tests := []struct {
		name      string
		win, lose store.Entry
	}{
		{"higher version", store.Entry{Name: "n", Version: 2}, store.Entry{Name: "n", Version: 1, Writer: w2}},
		{"higher writer", store.Entry{Name: "n", Version: 1, Writer: w2}, store.Entry{Name: "n", Version: 1, Writer: w1, Deleted: true}},
		{"tombstone over live", store.Entry{Name: "n", Version: 1, Deleted: true}, store.Entry{Name: "n", Version: 1, Value: []byte{9}}},
		{"higher value", store.Entry{Name: "n", Value: []byte{2}}, store.Entry{Name: "n", Value: []byte{1, 9}}},
		{"value over empty", store.Entry{Name: "n", Value: []byte{0}}, store.Entry{Name: "n"}},
		{"later expiry", store.Entry{Name: "n", Expires: t2}, store.Entry{Name: "n", Expires: t1}},
		{"never expires over expiry", store.Entry{Name: "n"}, store.Entry{Name: "n", Expires: t2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.Merge(tt.win, tt.lose); !got.Equal(tt.win) {
				t.Errorf("Merge(win, lose) = %+v, want %+v", got, tt.win)
			}
			if got := store.Merge(tt.lose, tt.win); !got.Equal(tt.win) {
				t.Errorf("Merge(lose, win) = %+v, want %+v", got, tt.win)
			}
		})
	}
}

func TestEntryEqual(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	tests := []struct {
		name string
		a, b store.Entry
		want bool
	}{
		{"nil and empty value", store.Entry{Name: "n"}, store.Entry{Name: "n", Value: []byte{}}, true},
		{"same instant, other zone", store.Entry{Name: "n", Expires: t0}, store.Entry{Name: "n", Expires: t0.In(time.FixedZone("z", -7200))}, true},
		{"other name", store.Entry{Name: "n"}, store.Entry{Name: "m"}, false},
		{"other expiry", store.Entry{Name: "n", Expires: t0}, store.Entry{Name: "n"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEntryValidate(t *testing.T) {
	tests := []struct {
		name    string
		e       store.Entry
		wantErr string // "" for valid
	}{
		{"minimal", store.Entry{Name: "n"}, ""},
		{"max name and value", store.Entry{Name: strings.Repeat("n", store.MaxNameSize), Value: make([]byte, store.MaxValueSize)}, ""},
		{"tombstone", store.Entry{Name: "n", Deleted: true, Expires: time.Unix(1, 0)}, ""},
		{"empty name", store.Entry{}, "empty entry name"},
		{"long name", store.Entry{Name: strings.Repeat("n", store.MaxNameSize+1)}, "entry name is 1025 bytes, the limit is 1024"},
		{"big value", store.Entry{Name: "n", Value: make([]byte, store.MaxValueSize+1)}, "value is 16385 bytes, the limit is 16384"},
		{"tombstone with value", store.Entry{Name: "n", Deleted: true, Value: []byte{1}}, "a tombstone carries no value"},
		{"expiry before 1970", store.Entry{Name: "n", Expires: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, "outside 1970–2262"},
		{"expiry after 2262", store.Entry{Name: "n", Expires: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}, "outside 1970–2262"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestShardIDString(t *testing.T) {
	id := store.ShardID{Segment: 4, Shard: 2}
	id.Index[0], id.Index[1] = 0x3f, 0x2a
	if got, want := id.String(), "3f2a000000000000…/seg 4/shard 2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (store.Key{0xab}).String(), "ab00000000000000…"; got != want {
		t.Errorf("Key.String() = %q, want %q", got, want)
	}
}

func ExampleMerge() {
	alice, bob := [32]byte{'a'}, [32]byte{'b'}
	old := store.Entry{Name: "contact", Value: []byte("sip:alice@10.0.0.1"), Version: 7, Writer: alice}
	newer := store.Entry{Name: "contact", Value: []byte("sip:alice@10.0.0.2"), Version: 8, Writer: alice}
	tie := store.Entry{Name: "contact", Version: 8, Writer: bob, Deleted: true}

	fmt.Printf("%s\n", store.Merge(old, newer).Value)
	fmt.Println(store.Merge(newer, tie).Deleted) // same version: the higher writer wins
	// Output:
	// sip:alice@10.0.0.2
	// true
}
