package local

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
)

var update = flag.Bool("update", false, "rewrite testdata/layout.golden from the current encoders")

const goldenPath = "testdata/layout.golden"

// layoutID and layoutKey are the fixtures of the golden layout.
func layoutID() store.ShardID {
	id := store.ShardID{Segment: 0x01020304, Shard: 0x0506}
	for i := range id.Index {
		id.Index[i] = byte(i)
	}
	return id
}

func layoutKey() store.Key {
	var k store.Key
	for i := range k {
		k[i] = 0xa0 + byte(i)
	}
	return k
}

var layoutEntries = map[string]store.Entry{
	"entry live": {
		Name: "contact", Value: []byte("sip:alice@192.0.2.1:5060"), Version: 0x0102030405060708,
		Writer: [32]byte{'w', 'r', 'i', 't', 'e', 'r'}, Expires: time.Unix(1700000000, 123456789),
	},
	"entry never expires": {Name: "greeting", Value: []byte{0, 0xff}, Version: 1},
	"entry empty value":   {Name: "e", Version: 2, Writer: [32]byte{31: 1}},
	"entry tombstone": {
		Name: "contact", Version: 0x0102030405060709, Writer: [32]byte{'w'},
		Deleted: true, Expires: time.Unix(1800000000, 0),
	},
}

// layoutLines encodes the fixtures: one "name hex" line per key and value.
func layoutLines() []string {
	id, key := layoutID(), layoutKey()
	h := coding.HashOf([]byte("voicering"))
	lines := []string{
		"format-key " + hex.EncodeToString(formatKey),
		"format-value " + hex.EncodeToString(encodeFormat(formatVersion)),
		"shard-meta-key " + hex.EncodeToString(shardMetaKey(id)),
		"shard-meta-value " + hex.EncodeToString(encodeShardMeta(h, 9)),
		"shard-data-key " + hex.EncodeToString(shardDataKey(id)),
		"entry-key " + hex.EncodeToString(entryKey(key, "contact")),
	}
	for _, name := range []string{"entry live", "entry never expires", "entry empty value", "entry tombstone"} {
		lines = append(lines, strings.ReplaceAll(name, " ", "-")+" "+hex.EncodeToString(encodeEntry(layoutEntries[name])))
	}
	return lines
}

// TestLayoutGolden freezes the on-disk encodings: a change to any key or
// value encoding fails here. If the change is meant, it needs a new
// formatVersion (and a migration of older stores); then rewrite the golden
// file with go test ./store/local -run TestLayoutGolden -update.
func TestLayoutGolden(t *testing.T) {
	got := strings.Join(layoutLines(), "\n") + "\n"
	if *update {
		if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	gotLines, wantLines := strings.Split(got, "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		var g, w string
		if i < len(gotLines) {
			g = gotLines[i]
		}
		if i < len(wantLines) {
			w = wantLines[i]
		}
		if g != w {
			t.Errorf("%s line %d: encoding changed\ngot  %s\nwant %s", filepath.Base(goldenPath), i+1, g, w)
		}
	}
}

// TestLayoutDecodeGolden reads the frozen bytes back: today's decoders must
// read what the format-1 encoders wrote.
func TestLayoutDecodeGolden(t *testing.T) {
	raw, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	golden := map[string][]byte{}
	for line := range strings.Lines(string(raw)) {
		name, h, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			t.Fatalf("malformed golden line %q", line)
		}
		if golden[name], err = hex.DecodeString(h); err != nil {
			t.Fatalf("golden line %q: %v", line, err)
		}
	}

	if v, err := decodeFormat(golden["format-value"]); err != nil || v != formatVersion {
		t.Errorf("decodeFormat = %d, %v; want %d", v, err, formatVersion)
	}
	for _, name := range []string{"shard-meta-key", "shard-data-key"} {
		if id, err := decodeShardKey(golden[name]); err != nil || id != layoutID() {
			t.Errorf("decodeShardKey(%s) = %v, %v; want %v", name, id, err, layoutID())
		}
	}
	if h, size, err := decodeShardMeta(golden["shard-meta-value"]); err != nil || h != coding.HashOf([]byte("voicering")) || size != 9 {
		t.Errorf("decodeShardMeta = %s, %d, %v; want the hash of %q, 9", h, size, err, "voicering")
	}
	if key, name, err := decodeEntryKey(golden["entry-key"]); err != nil || key != layoutKey() || name != "contact" {
		t.Errorf("decodeEntryKey = %s, %q, %v; want %s, %q", key, name, err, layoutKey(), "contact")
	}
	for name, want := range layoutEntries {
		got, err := decodeEntry(want.Name, golden[strings.ReplaceAll(name, " ", "-")])
		if err != nil || !got.Equal(want) {
			t.Errorf("decodeEntry(%s) = %+v, %v; want %+v", name, got, err, want)
		}
	}
}

func TestTTL(t *testing.T) {
	tests := []struct {
		name    string
		expires time.Time
		want    uint64
	}{
		{"never", time.Time{}, 0},
		{"whole second", time.Unix(1700000000, 0), 1700000000},
		{"rounded up", time.Unix(1700000000, 1), 1700000001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ttl(tt.expires); got != tt.want {
				t.Errorf("ttl(%v) = %d, want %d", tt.expires, got, tt.want)
			}
		})
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range layoutEntries {
		f.Add(e.Name, encodeEntry(e))
	}
	f.Add("n", []byte{})
	f.Add("n", bytes.Repeat([]byte{0xff}, entryHeaderLen+3))
	f.Add("", make([]byte, entryHeaderLen))
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		e, err := decodeEntry(name, b)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decodeEntry accepted an invalid entry: %v", err)
		}
		if got := encodeEntry(e); !bytes.Equal(got, b) {
			t.Fatalf("encodeEntry(decodeEntry(%x)) = %x, want the input back", b, got)
		}
	})
}

func FuzzDecodeShardMeta(f *testing.F) {
	f.Add(encodeShardMeta(coding.HashOf(nil), 0))
	f.Add(encodeShardMeta(coding.HashOf([]byte("x")), store.MaxShardSize))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, size, err := decodeShardMeta(b)
		if err != nil {
			return
		}
		if got := encodeShardMeta(h, size); !bytes.Equal(got, b) {
			t.Fatalf("encodeShardMeta(decodeShardMeta(%x)) = %x, want the input back", b, got)
		}
	})
}

func FuzzDecodeKeys(f *testing.F) {
	f.Add(shardMetaKey(layoutID()))
	f.Add(shardDataKey(layoutID()))
	f.Add(entryKey(layoutKey(), "contact"))
	f.Add(formatKey)
	f.Fuzz(func(t *testing.T, k []byte) {
		if id, err := decodeShardKey(k); err == nil {
			if got, got2 := shardMetaKey(id), shardDataKey(id); !bytes.Equal(got, k) && !bytes.Equal(got2, k) {
				t.Fatalf("shard key %x decodes to %v, which encodes to %x", k, id, got)
			}
		}
		if key, name, err := decodeEntryKey(k); err == nil {
			if got := entryKey(key, name); !bytes.Equal(got, k) {
				t.Fatalf("entry key %x decodes to %s %q, which encodes to %x", k, key, name, got)
			}
		}
	})
}

func FuzzDecodeFormat(f *testing.F) {
	f.Add(encodeFormat(formatVersion))
	f.Add([]byte("vrst"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := decodeFormat(b); err == nil {
			if got := encodeFormat(v); !bytes.Equal(got, b) {
				t.Fatalf("encodeFormat(decodeFormat(%x)) = %x", b, got)
			}
		}
	})
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "voicering-store")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	s, err := Open(dir, Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	// A real node runs s.Run(ctx) in its errgroup and closes after it returns.
	fmt.Println("open")
	// Output: open
}
