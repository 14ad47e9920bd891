package dht

import (
	"encoding/json"
	"testing"
)

func idFrom(b ...byte) ID {
	var id ID
	copy(id[IDSize-len(b):], b)
	return id
}

func TestBetween(t *testing.T) {
	a, b, c := idFrom(10), idFrom(20), idFrom(30)
	tests := []struct {
		name      string
		x, lo, hi ID
		open      bool // Between
		right     bool // BetweenRight
	}{
		{"inside", b, a, c, true, true},
		{"at left end", a, a, c, false, false},
		{"at right end", c, a, c, false, true},
		{"outside", c, a, b, false, false},
		{"wrapped inside high", c, b, a, true, true},
		{"wrapped inside low", idFrom(5), b, a, true, true},
		{"wrapped outside", idFrom(15), b, a, false, false},
		{"whole ring", b, a, a, true, true},
		{"whole ring at the end", a, a, a, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Between(tt.x, tt.lo, tt.hi); got != tt.open {
				t.Errorf("Between = %v, want %v", got, tt.open)
			}
			if got := BetweenRight(tt.x, tt.lo, tt.hi); got != tt.right {
				t.Errorf("BetweenRight = %v, want %v", got, tt.right)
			}
		})
	}
}

func TestDistanceAndAddPow2(t *testing.T) {
	var max ID
	for i := range max {
		max[i] = 0xff
	}
	tests := []struct {
		name string
		a, b ID
		want ID
	}{
		{"forward", idFrom(1), idFrom(3), idFrom(2)},
		{"wraps", idFrom(3), idFrom(1), func() ID { d := max; d[IDSize-1] = 0xfe; return d }()},
		{"same", idFrom(7), idFrom(7), ID{}},
		{"across a byte", idFrom(0xff), idFrom(1, 0), idFrom(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Distance(tt.a, tt.b); got != tt.want {
				t.Errorf("Distance = %s, want %s", got, tt.want)
			}
		})
	}
	if got, want := idFrom(0xff).AddPow2(0), idFrom(1, 0); got != want {
		t.Errorf("AddPow2(0) = %s, want %s", got, want)
	}
	if got, want := max.AddPow2(0), (ID{}); got != want {
		t.Errorf("max.AddPow2(0) = %s, want %s (wrap)", got, want)
	}
	var top ID
	top[0] = 0x80
	if got := (ID{}).AddPow2(255); got != top {
		t.Errorf("AddPow2(255) = %s, want %s", got, top)
	}
	if got := top.Fraction(); got != 0.5 {
		t.Errorf("Fraction = %v, want 0.5", got)
	}
}

func TestKeyAndText(t *testing.T) {
	// SHA-256("abc"), FIPS 180-2 appendix B.1.
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	k := Key("abc")
	if got := k.String(); got != abc {
		t.Errorf("Key(abc) = %s, want %s", got, abc)
	}
	if got, want := k.Short(), abc[:8]; got != want {
		t.Errorf("Short = %s, want %s", got, want)
	}
	b, err := json.Marshal(Peer{ID: k, Addr: "a:1"})
	if err != nil {
		t.Fatal(err)
	}
	var p Peer
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.ID != k || p.Addr != "a:1" {
		t.Errorf("JSON round trip = %+v, want %s@a:1", p, k)
	}
	for _, bad := range []string{"", "xyz", abc[:63] + "g"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) succeeded, want error", bad)
		}
	}
}
