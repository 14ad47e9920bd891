package dht

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParsePeerCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
		err  bool
	}{
		{name: "empty cache", in: peerCacheHeader + "\n", want: nil},
		{name: "addresses", in: peerCacheHeader + "\n127.0.0.1:7946\n[::1]:7947\n", want: []string{"127.0.0.1:7946", "[::1]:7947"}},
		{name: "comments, blanks, duplicates, CRLF", in: peerCacheHeader + "\r\n# note\n\na:1\r\na:1\nb:2", want: []string{"a:1", "b:2"}},
		{name: "no header", in: "a:1\n", err: true},
		{name: "empty file", in: "", err: true},
		{name: "space inside an address", in: peerCacheHeader + "\na 1\n", err: true},
		{name: "control character", in: peerCacheHeader + "\na\x00:1\n", err: true},
		{name: "address too long", in: peerCacheHeader + "\n" + strings.Repeat("a", maxCachedAddr+1) + "\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePeerCache([]byte(tc.in))
			if tc.err {
				if !errors.Is(err, errPeerCache) {
					t.Fatalf("err = %v, want errPeerCache", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestPeerCacheBounded(t *testing.T) {
	var addrs []string
	for i := range 2 * maxCachedPeers {
		addrs = append(addrs, "peer-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	got, err := parsePeerCache(encodePeerCache(addrs))
	if err != nil || len(got) != maxCachedPeers || !slices.Equal(got, addrs[:maxCachedPeers]) {
		t.Fatalf("got %d addresses, %v; want the first %d", len(got), err, maxCachedPeers)
	}
}

func TestWritePeerCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.cache")
	if got, err := readPeerCache(path); err != nil || got != nil {
		t.Fatalf("missing cache: got %q, %v; want none, no error", got, err)
	}
	for _, addrs := range [][]string{{"a:1", "b:2"}, {"c:3"}} {
		if err := writePeerCache(path, addrs); err != nil {
			t.Fatal(err)
		}
		got, err := readPeerCache(path)
		if err != nil || !slices.Equal(got, addrs) {
			t.Fatalf("read back %q, %v; want %q", got, err, addrs)
		}
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("directory holds %d files, want only the cache (no temporary files left)", len(ents))
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPeerCache(path); !errors.Is(err, errPeerCache) {
		t.Errorf("corrupt cache: err = %v, want errPeerCache", err)
	}
}

// FuzzParsePeerCache: any bytes parse or fail with errPeerCache, what
// parses is bounded, and re-encoding it parses to the same addresses.
func FuzzParsePeerCache(f *testing.F) {
	f.Add([]byte(peerCacheHeader + "\na:1\nb:2\n"))
	f.Add([]byte(peerCacheHeader + "\r\n# x\n\n[::1]:7946\r\n"))
	f.Add([]byte("a:1\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		addrs, err := parsePeerCache(b)
		if err != nil {
			if !errors.Is(err, errPeerCache) {
				t.Fatalf("err = %v, want errPeerCache", err)
			}
			return
		}
		if len(addrs) > maxCachedPeers {
			t.Fatalf("%d addresses, want at most %d", len(addrs), maxCachedPeers)
		}
		again, err := parsePeerCache(encodePeerCache(addrs))
		if err != nil || !slices.Equal(again, addrs) {
			t.Fatalf("round trip: got %q, %v; want %q", again, err, addrs)
		}
	})
}
