package sipvm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/sipvm/media"
)

// A spool keeps every deposit on the answering peer's disk until it is in
// its mailbox, as a mail server's queue keeps a message until the next
// hop has taken it. The recording is written to the spool as the caller
// speaks, beside the ring; a deposit the ring could not store (too few
// live peers for the coding, records unreachable, the peer stopping)
// stays there and is stored again every RetryEvery, also after the peer
// restarts, until the ring takes it. A stored deposit leaves the spool.
//
// Each deposit is two files named by its message ID: ID.wav, the
// recording as streamed (a WAV of unknown size), and ID.json, a
// spoolNote. The note is written first, so a peer that dies during a call
// finds both after its restart and deposits what was recorded. The spool
// holds plaintext audio: the peer answering the call hears it anyway;
// the directory is the peer's own (0700) and emptied as deposits land.
type spool struct {
	dir   string
	every time.Duration
	v     *voicemail

	mu   sync.Mutex
	busy map[string]bool // recording now, or being retried
	kick chan struct{}   // a deposit was left: retry sooner than every

	waiting atomic.Int64 // deposits in the spool, not yet stored
	stored  atomic.Int64 // deposits the retries stored
}

// spoolNote is the ID.json of a spooled deposit.
type spoolNote struct {
	AOR string `json:"aor"`
	ID  string `json:"id"`
	// Message is the mailbox entry; Cap is set once the recording is
	// stored, Duration once the call ended (a note left by a peer that
	// died during the call has none: the file's length says it).
	Message Message `json:"message"`
	// Version is the mailbox entry's version, fixed at the first try, so
	// that a try repeated after one that half succeeded does not undo
	// what the owner did meanwhile (saved or deleted the message).
	Version uint64 `json:"version,omitempty"`
	// Tries counts the attempts to store the deposit; Err is the last
	// failure, for an operator reading the spool.
	Tries int    `json:"tries"`
	Err   string `json:"err,omitempty"`
}

func newSpool(v *voicemail, dir string, every time.Duration) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: voicemail spool %s: %v (give a writable directory)", ErrConfig, dir, err)
	}
	sp := &spool{dir: dir, every: every, v: v, busy: map[string]bool{}, kick: make(chan struct{}, 1)}
	ids, err := sp.list()
	if err != nil {
		return nil, fmt.Errorf("%w: voicemail spool: %v", ErrConfig, err)
	}
	sp.waiting.Store(int64(len(ids)))
	return sp, nil
}

// newMessageID returns a fresh message ID (16 hex digits).
func newMessageID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (sp *spool) path(id, ext string) string { return filepath.Join(sp.dir, id+ext) }

// list returns the IDs of the deposits in the spool.
func (sp *spool) list() ([]string, error) {
	des, err := os.ReadDir(sp.dir)
	if err != nil {
		return nil, fmt.Errorf("read the spool %s: %w", sp.dir, err)
	}
	var ids []string
	for _, de := range des {
		if id, ok := strings.CutSuffix(de.Name(), ".json"); ok && !de.IsDir() && !strings.HasPrefix(id, ".") {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// spooled is one deposit being recorded into the spool.
type spooled struct {
	sp   *spool
	note spoolNote
	f    *os.File // nil once closed, or when writing failed
	werr error
}

// begin opens the spool files of a new deposit for aor; msg has its ID,
// From, At and Folder. A spool that cannot take it (disk full) logs why
// and returns nil: the call goes on, stored by the ring alone.
func (sp *spool) begin(aor string, msg Message) *spooled {
	if sp == nil {
		return nil
	}
	e := &spooled{sp: sp, note: spoolNote{AOR: aor, ID: msg.ID, Message: msg}}
	sp.mu.Lock()
	sp.busy[msg.ID] = true // before the note exists: the retries leave it alone
	sp.mu.Unlock()
	f, err := os.OpenFile(sp.path(msg.ID, ".wav"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		err = media.WriteHeader(f, media.UnknownSize)
		if err == nil {
			err = sp.save(e.note)
		}
		if err != nil {
			f.Close()
			os.Remove(sp.path(msg.ID, ".wav"))
		}
	}
	if err != nil {
		sp.release(msg.ID)
		sp.v.s.log.Error("voicemail: cannot spool the recording; it is stored by the ring alone", "aor", aor, "err", err)
		return nil
	}
	e.f = f
	sp.waiting.Add(1)
	return e
}

// Write appends recorded WAV sample bytes. A write that fails (disk full)
// ends spooling for this deposit, not the call: Write never fails.
func (e *spooled) Write(b []byte) (int, error) {
	if e == nil || e.f == nil {
		return len(b), nil
	}
	if _, err := e.f.Write(b); err != nil {
		e.werr = err
		e.f.Close()
		e.f = nil
		e.sp.v.s.log.Error("voicemail: spooling the recording failed; it is stored by the ring alone", "aor", e.note.AOR, "id", e.note.ID, "err", err)
	}
	return len(b), nil
}

// done removes the deposit from the spool: stored, or dropped on
// purpose (too short).
func (e *spooled) done() {
	if e == nil {
		return
	}
	if e.f != nil {
		e.f.Close()
		e.f = nil
	}
	e.sp.remove(e.note.ID)
	e.sp.release(e.note.ID)
}

// leave keeps the deposit in the spool for the retries: msg is as far as
// it got (Duration, and Cap when the recording was stored), err why it
// was not stored. It returns whether the spool has it.
func (e *spooled) leave(msg Message, version uint64, err error) bool {
	if e == nil {
		return false
	}
	defer e.sp.release(e.note.ID)
	ok := e.f != nil && e.werr == nil
	if e.f != nil {
		if serr := e.f.Sync(); serr != nil {
			ok = false
		}
		if cerr := e.f.Close(); cerr != nil {
			ok = false
		}
		e.f = nil
	}
	if ok {
		msg.ID = e.note.ID
		e.note.Message, e.note.Version, e.note.Tries, e.note.Err = msg, version, 1, err.Error()
		ok = e.sp.save(e.note) == nil
	}
	if !ok {
		e.sp.remove(e.note.ID)
		return false
	}
	select {
	case e.sp.kick <- struct{}{}:
	default:
	}
	return true
}

func (sp *spool) release(id string) {
	sp.mu.Lock()
	delete(sp.busy, id)
	sp.mu.Unlock()
}

// remove deletes a deposit's files, the note last: a note without its
// recording is reported and dropped by the retries.
func (sp *spool) remove(id string) {
	if err := os.Remove(sp.path(id, ".wav")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		sp.v.s.log.Warn("voicemail: remove from spool", "id", id, "err", err)
	}
	if err := os.Remove(sp.path(id, ".json")); err == nil {
		sp.waiting.Add(-1)
	} else if !errors.Is(err, fs.ErrNotExist) {
		sp.v.s.log.Warn("voicemail: remove from spool", "id", id, "err", err)
	}
}

// save writes n as ID.json, atomically, and syncs it.
func (sp *spool) save(n spoolNote) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(sp.dir, "."+n.ID+".json-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), sp.path(n.ID, ".json"))
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// run retries the spooled deposits at once and then every sp.every (or
// sooner, when a call leaves one) until ctx ends.
func (sp *spool) run(ctx context.Context) {
	t := time.NewTicker(sp.every)
	defer t.Stop()
	for {
		sp.retryAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-sp.kick:
			// Not at once: whatever failed the call's own try has
			// likely not healed yet.
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}

func (sp *spool) retryAll(ctx context.Context) {
	ids, err := sp.list()
	if err != nil {
		sp.v.s.log.Error("voicemail: spool", "err", err)
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		sp.mu.Lock()
		busy := sp.busy[id]
		sp.busy[id] = true
		sp.mu.Unlock()
		if busy {
			continue
		}
		sp.retry(ctx, id)
		sp.release(id)
	}
}

// retry tries once to store spooled deposit id: its recording on the
// ring (unless a try did), then its mailbox entry, then the NOTIFYs.
func (sp *spool) retry(ctx context.Context, id string) {
	v := sp.v
	b, err := os.ReadFile(sp.path(id, ".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return // stored meanwhile
	}
	var n spoolNote
	if err == nil {
		err = json.Unmarshal(b, &n)
	}
	if err == nil && n.ID != id {
		err = fmt.Errorf("it names message %q", n.ID)
	}
	if err != nil {
		v.s.log.Error("voicemail: unreadable spool note; moved aside, the deposit is not retried", "file", sp.path(id, ".json"), "err", err)
		os.Rename(sp.path(id, ".json"), sp.path(id, ".json.bad"))
		sp.waiting.Add(-1)
		return
	}
	n.Message.ID = id
	if n.Message.Cap == (coding.Cap{}) {
		if err := sp.putRecording(ctx, &n); err != nil {
			sp.failed(n, err)
			return
		}
		if n.Message.Duration < v.cfg.MinLength {
			v.dropped.Add(1)
			v.s.log.Info("voicemail: spooled recording too short, dropped", "aor", n.AOR, "id", id, "duration", n.Message.Duration)
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v.cfg.Objects.Remove(rctx, n.Message.Cap)
			cancel()
			sp.remove(id)
			return
		}
		// Keep the cap, so that a later try stores the entry only.
		if err := sp.save(n); err != nil {
			v.s.log.Warn("voicemail: spool note", "id", id, "err", err)
		}
	}
	if n.Version == 0 {
		n.Version = uint64(v.s.cfg.Now().UnixNano())
	}
	wctx, cancel := context.WithTimeout(ctx, v.s.cfg.RecordTimeout)
	defer cancel()
	if _, err := v.boxes.store(wctx, n.AOR, n.Message, n.Version); err != nil {
		sp.failed(n, err)
		return
	}
	sp.remove(id)
	sp.stored.Add(1)
	v.deposits.Add(1)
	v.s.log.Info("voicemail: spooled deposit stored", "aor", n.AOR, "id", id, "duration", n.Message.Duration, "tries", n.Tries+1)
	v.notifyAll(wctx, n.AOR)
}

// putRecording stores the spooled recording of n on the ring and sets
// its Cap (and its Duration, when the call never ended on this peer).
func (sp *spool) putRecording(ctx context.Context, n *spoolNote) error {
	v := sp.v
	f, err := os.Open(sp.path(n.ID, ".wav"))
	if err != nil {
		return fmt.Errorf("open the spooled recording: %w", err)
	}
	defer f.Close()
	if n.Message.Duration == 0 {
		if fi, err := f.Stat(); err == nil && fi.Size() > media.HeaderSize {
			n.Message.Duration = time.Duration((fi.Size()-media.HeaderSize)/2) * time.Second / media.SampleRate
		}
	}
	// A whole recording is at most MaxLength of audio: a generous bound
	// on storing it, so that one stuck try does not hold the others.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, _, err := v.cfg.Objects.Put(pctx, io.Reader(f), v.recordingParams())
	if err != nil {
		return fmt.Errorf("store the recording: %w", err)
	}
	n.Message.Cap = c
	return nil
}

// failed records a failed try in the note.
func (sp *spool) failed(n spoolNote, err error) {
	n.Tries++
	n.Err = err.Error()
	if serr := sp.save(n); serr != nil {
		sp.v.s.log.Warn("voicemail: spool note", "id", n.ID, "err", serr)
	}
	if errors.Is(err, fs.ErrNotExist) { // the recording is gone: nothing to retry
		sp.v.s.log.Error("voicemail: spooled recording missing; deposit dropped", "aor", n.AOR, "id", n.ID)
		sp.remove(n.ID)
		return
	}
	sp.v.s.log.Warn("voicemail: spooled deposit not stored yet; will retry", "aor", n.AOR, "id", n.ID, "tries", n.Tries, "every", sp.every, "err", err)
}
