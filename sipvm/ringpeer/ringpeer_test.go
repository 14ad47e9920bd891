package ringpeer_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/voicering/voicering/sipvm/ringpeer"
)

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vm.key")
	k, err := ringpeer.CreateKey(path)
	if err != nil || len(k) != 32 {
		t.Fatalf("CreateKey: got %d bytes, %v, want 32 bytes", len(k), err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v, want mode 0600", st, err)
	}
	if _, err := ringpeer.CreateKey(path); !errors.Is(err, ringpeer.ErrKeyExists) {
		t.Errorf("CreateKey over an existing file: got %v, want ErrKeyExists", err)
	}
	if got, err := ringpeer.ReadKey(path); err != nil || !bytes.Equal(got, k) {
		t.Errorf("ReadKey: got %x, %v, want %x", got, err, k)
	}
	// VoicemailKey makes a key once and reads it back after.
	peerDir := filepath.Join(dir, "peer")
	k1, err1 := ringpeer.VoicemailKey(peerDir)
	k2, err2 := ringpeer.VoicemailKey(peerDir)
	if err1 != nil || err2 != nil || !bytes.Equal(k1, k2) || len(k1) != 32 {
		t.Errorf("VoicemailKey twice: got %x, %v and %x, %v, want one 32-byte key", k1, err1, k2, err2)
	}

	bad := []struct {
		name, content string
	}{
		{"short", "abcd\n"},
		{"not hex", string(bytes.Repeat([]byte("zz"), 32)) + "\n"},
		{"empty", ""},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "k")
			os.WriteFile(p, []byte(tc.content), 0o600)
			if _, err := ringpeer.ReadKey(p); err == nil {
				t.Errorf("ReadKey(%q): got no error", tc.content)
			}
		})
	}
	if _, err := ringpeer.ReadKey(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadKey of a missing file: got %v, want fs.ErrNotExist", err)
	}
}

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	debug.SetGCPercent(100)
	ringpeer.TuneGC()
	if got := debug.SetGCPercent(100); got != ringpeer.GCPercent {
		t.Errorf("with GOGC unset, the GC target is %d, want %d", got, ringpeer.GCPercent)
	}
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // what the runtime did at start with GOGC=150
	ringpeer.TuneGC()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("with GOGC=150, TuneGC changed the target to %d", got)
	}
}
