package coding

import (
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the frozen vectors in testdata/coding (only when the format version changes)")

// vectorDir holds a small object, its key, manifest, cap and every shard, as
// format version 1 produced them. A change that alters any byte fails here:
// stored objects must stay readable across upgrades.
var vectorDir = filepath.Join("..", "testdata", "coding", "v1")

var vectorParams = Params{Scheme: Scheme{2, 3}, SegmentSize: 2048, ContentType: "audio/wav"}

func TestFrozenVectors(t *testing.T) {
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			t.Fatalf("read vector: %v (run go test ./coding -run TestFrozenVectors -update to create it)", err)
		}
		return b
	}
	if *update {
		writeVectors(t)
	}
	object := read("object.bin")
	keyBytes, err := hex.DecodeString(strings.TrimSpace(string(read("key.hex"))))
	if err != nil || len(keyBytes) != KeySize {
		t.Fatalf("key.hex: %v (%d bytes)", err, len(keyBytes))
	}
	key := Key(keyBytes)

	// Encoding the object again gives the same bytes.
	st := encodeBytes(t, object, key, vectorParams)
	mb, err := st.m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mb, read("manifest.bin")) {
		t.Error("manifest encoding changed: format version 1 is frozen")
	}
	for s, seg := range st.shards {
		for i, sh := range seg {
			if !bytes.Equal(sh, read(shardFile(s, i))) {
				t.Errorf("segment %d shard %d changed: format version 1 is frozen", s, i)
			}
		}
	}
	h, _ := st.m.Hash()
	if got, want := (Cap{key, h}).String(), strings.TrimSpace(string(read("cap.txt"))); got != want {
		t.Errorf("cap %s, frozen %s", got, want)
	}

	// The frozen shards, read back through the frozen cap, give the object.
	c, err := ParseCap(string(read("cap.txt")))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Open(read("manifest.bin"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDecoder(c.Key, m, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = d.Decode(context.Background(), &out, func(_ context.Context, col *Collector) error {
		for i := m.Scheme.Total - 1; i >= 0; i-- { // parity first: exercises reconstruction
			if enough, _ := col.Offer(i, read(shardFile(col.Segment(), i))); enough {
				return nil
			}
		}
		return nil
	})
	if err != nil || !bytes.Equal(out.Bytes(), object) {
		t.Fatalf("decoding the frozen shards: %v (%d bytes, want %d)", err, out.Len(), len(object))
	}
}

func shardFile(s, i int) string { return fmt.Sprintf("seg%d-shard%d.bin", s, i) }

func writeVectors(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	object := randomBytes(2026, 5000) // three segments, the last short
	key := testKey(42)
	st := encodeBytes(t, object, key, vectorParams)
	mb, _ := st.m.MarshalBinary()
	h, _ := st.m.Hash()
	files := map[string][]byte{
		"object.bin":   object,
		"key.hex":      []byte(hex.EncodeToString(key[:]) + "\n"),
		"manifest.bin": mb,
		"cap.txt":      []byte(Cap{key, h}.String() + "\n"),
	}
	for s, seg := range st.shards {
		for i, sh := range seg {
			files[shardFile(s, i)] = sh
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
