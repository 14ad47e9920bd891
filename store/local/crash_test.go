package local

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/store"
)

// crashDirEnv gates TestCrashHelper: set, it names the store directory the
// helper writes to until it is killed.
const crashDirEnv = "VOICERING_STORE_CRASH_DIR"

// crashEpochEnv passes the helper the time its soft entries expire from,
// so that the parent can rebuild them.
const crashEpochEnv = "VOICERING_STORE_CRASH_EPOCH"

// crashAcks is how many acknowledged writes the parent waits for before it
// kills the writer.
const crashAcks = 200

// crashShard returns the i-th shard the helper writes. Sizes alternate
// between LSM-sized and value-log-sized values.
func crashShard(i int) (store.ShardID, []byte) {
	id := store.ShardID{Segment: uint32(i / 8), Shard: uint16(i % 8)}
	id.Index[0] = 0xc0
	size := 100 + i*37%5000
	if i%2 == 1 {
		size = valueThreshold + i*997%(64<<10)
	}
	data := make([]byte, size)
	for j := range data {
		data[j] = byte(i*31 + j)
	}
	return id, data
}

// crashEntry returns the i-th entry the helper writes; later versions of a
// name overwrite earlier ones.
func crashEntry(i int) (store.Key, store.Entry) {
	return store.Key{0xe0, byte(i % 3)}, store.Entry{
		Name:    fmt.Sprintf("name-%d", i%10),
		Value:   []byte(fmt.Sprintf("value %d", i)),
		Version: uint64(i),
		Writer:  [32]byte{'c'},
	}
}

// crashSoftEntry returns the i-th soft-state entry the helper writes: it
// expires within SoftExpiry, so it is not fsynced, yet an acknowledged one
// must survive the crash of the process like any other write.
func crashSoftEntry(i int, now time.Time) (store.Key, store.Entry) {
	key, e := crashEntry(i)
	key[0] = 0xe1
	e.Value = []byte(fmt.Sprintf("soft %d", i))
	e.Expires = now.Add(time.Hour)
	return key, e
}

// TestCrashHelper is the child process of TestCrash. It does nothing unless
// crashDirEnv is set. It writes shards and record entries in a loop and
// prints "ack shard i" or "ack entry i" after each write has returned, until
// it is killed.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	s, err := Open(dir, Config{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx := context.Background()
	epoch, err := time.Parse(time.RFC3339Nano, os.Getenv(crashEpochEnv))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		id, data := crashShard(i)
		if err := s.PutShard(ctx, id, coding.HashOf(data), data); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(out, "ack shard", i)
		out.Flush()
		key, e := crashEntry(i)
		if _, err := s.MergeRecord(ctx, key, []store.Entry{e}); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(out, "ack entry", i)
		out.Flush()
		key, e = crashSoftEntry(i, epoch)
		if _, err := s.MergeRecord(ctx, key, []store.Entry{e}); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(out, "ack soft", i)
		out.Flush()
	}
}

// TestCrash kills a writing process with SIGKILL and checks that every write
// it acknowledged survives, intact, when the store is reopened.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	epoch := time.Now().Truncate(time.Second)
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashEpochEnv+"="+epoch.Format(time.RFC3339Nano))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	shards, entries, soft := -1, -1, -1 // highest acknowledged index of each
	lines := bufio.NewScanner(stdout)
	for acks := 0; acks < crashAcks; {
		if !lines.Scan() {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("writer stopped after %d acks: %v", acks, lines.Err())
		}
		kind, n, ok := strings.Cut(strings.TrimPrefix(lines.Text(), "ack "), " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("writer said %q", lines.Text())
		}
		switch kind {
		case "shard":
			shards = i
		case "entry":
			entries = i
		case "soft":
			soft = i
		}
		acks++
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL, mid-write
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("writer ended with %v, want killed by a signal", err)
	}
	t.Logf("killed the writer after %d acks: shards 0..%d, entries 0..%d, soft entries 0..%d acknowledged", crashAcks, shards, entries, soft)

	s := openAt(t, dir)
	ctx := t.Context()
	for i := 0; i <= shards; i++ {
		id, want := crashShard(i)
		got, h, err := s.GetShard(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged shard %d (%s): %v", i, id, err)
		}
		if h != coding.HashOf(want) || string(got) != string(want) {
			t.Fatalf("acknowledged shard %d (%s): data differs", i, id)
		}
	}
	checkCrashRecords(t, s, entries, crashEntry)
	checkCrashRecords(t, s, soft, func(i int) (store.Key, store.Entry) { return crashSoftEntry(i, epoch) })
}

// checkCrashRecords checks that the records hold, for each name, the
// latest acknowledged version of entries 0..acked made by entry, or a
// later one whose write was under way when the writer died.
func checkCrashRecords(t *testing.T, s *Store, acked int, entry func(int) (store.Key, store.Entry)) {
	t.Helper()
	ctx := t.Context()
	latest := map[store.Key]map[string]store.Entry{}
	for i := 0; i <= acked; i++ {
		key, e := entry(i)
		if latest[key] == nil {
			latest[key] = map[string]store.Entry{}
		}
		latest[key][e.Name] = e
	}
	for key, want := range latest {
		got, err := s.GetRecord(ctx, key)
		if err != nil {
			t.Fatalf("record %s: %v", key, err)
		}
		byName := map[string]store.Entry{}
		for _, e := range got {
			byName[e.Name] = e
		}
		for name, w := range want {
			g, ok := byName[name]
			switch {
			case !ok:
				t.Errorf("record %s: acknowledged entry %q (version %d) missing", key, name, w.Version)
			case g.Equal(w):
			case g.Version == uint64(acked+1):
				_, next := entry(acked + 1)
				if !g.Equal(next) {
					t.Errorf("record %s: entry %q = %+v, want %+v", key, name, g, next)
				}
			default:
				t.Errorf("record %s: entry %q = %+v (value %s), want %+v", key, name, g, hex.EncodeToString(g.Value), w)
			}
		}
	}
}
