package coding

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleManifest(t testing.TB) *Manifest {
	t.Helper()
	st := encodeBytes(t, randomBytes(9, 10000), testKey(9), Params{Scheme: Scheme{2, 3}, SegmentSize: 4096, ContentType: "audio/wav"})
	return st.m
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest(t)
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("parsed manifest %+v, want %+v", got, m)
	}
	b2, _ := got.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("re-encoding a parsed manifest changed its bytes")
	}
}

func TestParseManifestErrors(t *testing.T) {
	good, err := sampleManifest(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
		want string // a piece of the message a user sees
	}{
		{"empty", nil, "shorter than the 25-byte header"},
		{"not a manifest", []byte(strings.Repeat("x", 40)), `does not start with "VRMF"`},
		{"future version", edit(func(b []byte) []byte { b[4] = 2; return b }), "format version 2; this voicering reads version 1"},
		{"unknown hash", edit(func(b []byte) []byte { b[5] = 9; return b }), "unknown hash 9"},
		{"reserved flags", edit(func(b []byte) []byte { b[7] = 1; return b }), "flags 1"},
		{"needed zero", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[8:], 0); return b }), "needed is 0"},
		{"total below needed", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[10:], 1); return b }), "total 1 is less than needed 2"},
		{"total too large", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[10:], 999); return b }), "at most 256 shards"},
		{"tiny segments", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[12:], 10); return b }), "segment size 10 is outside"},
		{"huge size", edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[16:], 1<<63); return b }), "implausible"},
		{"size disagrees", edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[16:], 1<<40); return b }), "want"},
		{"truncated", good[:len(good)-1], "want"},
		{"trailing byte", append(bytes.Clone(good), 0), "want"},
		{"content type cut", good[:manifestHeader+3], "content type cut short"},
		{"control char in type", edit(func(b []byte) []byte { b[manifestHeader] = '\n'; return b }), "non-printable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest(tt.b)
			if err == nil {
				t.Fatalf("ParseManifest accepted it: %+v", m)
			}
			if !errors.Is(err, ErrBadManifest) {
				t.Errorf("error %v does not match ErrBadManifest", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestCap(t *testing.T) {
	m := sampleManifest(t)
	h, err := m.Hash()
	if err != nil {
		t.Fatal(err)
	}
	c := Cap{Key: testKey(9), Manifest: h}
	s := c.String()
	if !strings.HasPrefix(s, "vr1:") || len(s) != capLen {
		t.Fatalf("cap %q: want vr1: prefix and %d characters", s, capLen)
	}
	for _, in := range []string{s, strings.ToUpper(s[:4]) + strings.ToUpper(s[4:]), " " + s + "\n"} {
		got, err := ParseCap(in)
		if err != nil || got != c {
			t.Fatalf("ParseCap(%q) = %v, %v; want the cap back", in, got, err)
		}
	}
	if c.StorageIndex() == (StorageIndex{}) || c.StorageIndex() == StorageIndex(c.Key) {
		t.Fatal("storage index must be derived from, and differ from, the key")
	}
	b, _ := m.MarshalBinary()
	if _, err := c.Open(b); err != nil {
		t.Fatalf("Open of the right manifest: %v", err)
	}
	b[len(b)-1] ^= 1
	if _, err := c.Open(b); !errors.Is(err, ErrManifestMismatch) {
		t.Fatalf("Open of a tampered manifest: %v, want ErrManifestMismatch", err)
	}
}

func TestParseCapErrors(t *testing.T) {
	good := Cap{Key: testKey(1)}.String()
	tests := []struct{ name, in, want string }{
		{"empty", "", `must start with "vr1:"`},
		{"other scheme", "URI:CHK:abc", `must start with "vr1:"`},
		{"cut short", good[:len(good)-5], "was it cut"},
		{"bad alphabet", good[:len(good)-1] + "1", "illegal base32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCap(tt.in)
			if !errors.Is(err, ErrBadCap) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseCap(%q) error %v, want ErrBadCap saying %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestSchemeValidate(t *testing.T) {
	tests := []struct {
		s    Scheme
		want string // "" for valid
	}{
		{Scheme{4, 6}, ""}, {Scheme{1, 1}, ""}, {Scheme{256, 256}, ""}, {Scheme{1, 256}, ""},
		{Scheme{0, 6}, "needed is 0"}, {Scheme{-1, 6}, "needed is -1"},
		{Scheme{7, 6}, "total 6 is less than needed 7"}, {Scheme{4, 257}, "total is 257"},
	}
	for _, tt := range tests {
		t.Run(tt.s.String(), func(t *testing.T) {
			err := tt.s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrBadScheme) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want ErrBadScheme saying %q", err, tt.want)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	good, _ := sampleManifest(f).MarshalBinary()
	f.Add(good)
	f.Add(good[:manifestHeader])
	f.Add([]byte("VRMF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		// Whatever parses must re-encode to the same bytes (canonical).
		b2, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("parsed manifest re-encodes differently (%v)", err)
		}
	})
}

func FuzzParseCap(f *testing.F) {
	f.Add(Cap{Key: testKey(1)}.String())
	f.Add("vr1:")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCap(s)
		if err != nil {
			return
		}
		if c2, err := ParseCap(c.String()); err != nil || c2 != c {
			t.Fatalf("cap does not round-trip: %v", err)
		}
	})
}

func FuzzOffer(f *testing.F) {
	// Bytes a peer sends as a shard must never crash a reader; only a
	// shard that hashes right may be kept.
	st := encodeBytes(f, randomBytes(2, 5000), testKey(2), Params{Scheme: Scheme{2, 4}, SegmentSize: 4096})
	f.Add(0, 0, st.shards[0][0])
	f.Add(1, 3, st.shards[1][3])
	f.Add(-1, 9, []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, s, i int, data []byte) {
		if s < 0 || s >= len(st.shards) {
			s = 0
		}
		c := st.m.Collect(s)
		_, err := c.Offer(i, data)
		good := i >= 0 && i < 4 && bytes.Equal(data, st.shards[s][i])
		if good != (err == nil) {
			t.Fatalf("Offer(%d, %d bytes) error %v, but the shard is good=%v", i, len(data), err, good)
		}
	})
}
