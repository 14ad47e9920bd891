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
// stays there and is tried again after a second, then at doubling
// intervals up to RetryEvery, also after the peer restarts, until the
// ring takes it. A stored deposit leaves the spool.
//
// Each deposit is two files named by its message ID: ID.json, a
// spoolNote, written first, and ID.wav, the recording as it comes (a WAV
// of unknown size, fed from the RTP goroutine, not behind the ring's
// pace), so a peer that dies during a call finds both after its restart
// and deposits what was recorded. The spool holds plaintext audio: the
// peer answering the call hears it anyway; the directory is the peer's
// own (0700) and emptied as deposits land.
type spool struct {
	dir   string
	every time.Duration
	v     *voicemail

	mu   sync.Mutex
	busy map[string]bool // recording now, or being retried
	kick chan struct{}   // a deposit was left: retry sooner than every

	waiting atomic.Int64 // deposits left in the spool after their call
	stored  atomic.Int64 // deposits the retries stored
}

// errNoRecording marks a spooled deposit whose recording file is gone:
// nothing to retry. errPutFailed marks a recording the ring did not store.
var (
	errNoRecording = errors.New("the spooled recording is missing")
	errPutFailed   = errors.New("store the recording")
)

// spoolNote is the ID.json of a spooled deposit.
type spoolNote struct {
	AOR string `json:"aor"`
	ID  string `json:"id"`
	// Message is the mailbox entry; Cap is set once the recording is
	// stored, Duration once the call ended (a note left by a peer that
	// died during the call has none: the file's length says it).
	Message Message `json:"message"`
	// Version is the mailbox entry's version, fixed when the recording
	// starts (its At), so that a try repeated after one that half
	// succeeded, or after a crash, does not undo what the owner did
	// meanwhile (saved or deleted the message).
	Version uint64 `json:"version,omitempty"`
	// Tries counts the attempts to store the deposit; Err is the last
	// failure, for an operator reading the spool.
	Tries int    `json:"tries"`
	Err   string `json:"err,omitempty"`
}

func newSpool(v *voicemail, dir string, every time.Duration) (*spool, error) {
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		err = os.Chmod(dir, 0o700) // plain audio: the peer's own
	}
	if err != nil {
		return nil, fmt.Errorf("%w: voicemail spool %s: %v (give a writable directory)", ErrConfig, dir, err)
	}
	sp := &spool{dir: dir, every: every, v: v, busy: map[string]bool{}, kick: make(chan struct{}, 1)}
	// Notes half written when a peer died (save's temporary files).
	if tmps, err := filepath.Glob(filepath.Join(dir, ".*.json-*")); err == nil {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	ids, err := sp.list()
	if err != nil {
		return nil, fmt.Errorf("%w: voicemail spool: %v", ErrConfig, err)
	}
	sp.waiting.Store(int64(len(ids)))
	if len(ids) > 0 {
		v.s.log.Warn("voicemail: deposits the ring has not taken yet wait in the spool; retrying", "dir", dir, "deposits", len(ids))
	}
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
	e := &spooled{sp: sp, note: spoolNote{AOR: aor, ID: msg.ID, Message: msg, Version: entryVersion(msg.At)}}
	sp.mu.Lock()
	sp.busy[msg.ID] = true // before the note exists: the retries leave it alone
	sp.mu.Unlock()
	// Not synced: this runs between the beep and the caller's first
	// words, and a process that dies keeps what it wrote. The deposit is
	// synced when it is left for the retries.
	err := sp.save(e.note, false)
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(sp.path(msg.ID, ".wav"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			if err = media.WriteHeader(f, media.UnknownSize); err != nil {
				f.Close()
			}
		}
		if err != nil {
			sp.remove(msg.ID, false)
		}
	}
	if err != nil {
		sp.release(msg.ID)
		sp.v.s.log.Error("voicemail: cannot spool the recording; it is stored by the ring alone", "aor", aor, "err", err)
		return nil
	}
	e.f = f
	return e
}

// entryVersion is the mailbox entry version of a message recorded at at.
func entryVersion(at time.Time) uint64 { return uint64(at.UnixNano()) }

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
	e.sp.remove(e.note.ID, false)
	e.sp.release(e.note.ID)
}

// stored notes that the recording is on the ring (msg's Cap, and its
// Duration), so that a peer
// killed before the mailbox entry is written does not store it again.
// Not synced: a process that dies keeps what it wrote; should the machine
// crash meanwhile, the recording is stored again (a copy too many, not a
// message lost).
func (e *spooled) stored(msg Message) {
	if e == nil || e.werr != nil {
		return
	}
	e.note.Message.Cap, e.note.Message.Duration = msg.Cap, msg.Duration
	if err := e.sp.save(e.note, false); err != nil {
		e.sp.v.s.log.Warn("voicemail: spool note", "id", e.note.ID, "err", err)
	}
}

// leave keeps the deposit in the spool for the retries: msg is as far as
// it got (Duration, and Cap when the recording was stored), err why it
// was not stored. It returns whether the spool has it.
func (e *spooled) leave(msg Message, err error) bool {
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
		e.note.Message, e.note.Tries, e.note.Err = msg, 1, err.Error()
		ok = e.sp.save(e.note, true) == nil
	}
	if !ok {
		e.sp.remove(e.note.ID, false)
		return false
	}
	e.sp.waiting.Add(1)
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
// recording is reported and dropped by the retries. counted says the
// deposit is among those waiting.
func (sp *spool) remove(id string, counted bool) {
	if err := os.Remove(sp.path(id, ".wav")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		sp.v.s.log.Warn("voicemail: remove from spool", "id", id, "err", err)
	}
	err := os.Remove(sp.path(id, ".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		sp.v.s.log.Warn("voicemail: remove from spool", "id", id, "err", err)
	}
	if counted && err == nil {
		sp.waiting.Add(-1)
	}
}

// save writes n as ID.json, atomically, and syncs it when sync is set.
func (sp *spool) save(n spoolNote, sync bool) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(sp.dir, "."+n.ID+".json-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil && sync {
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
		return err
	}
	if sync { // the rename, and the recording's creation, survive a power loss
		d, err := os.Open(sp.dir)
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	return nil
}

// run retries the spooled deposits until ctx ends: at once (what a
// restart found), then, while some are left, after a second, doubling to
// sp.every, as a mail queue backs off; a call that leaves a deposit
// starts the backoff anew.
func (sp *spool) run(ctx context.Context) {
	first := min(time.Second, sp.every)
	wait := first
	for {
		next := sp.every
		if sp.retryAll(ctx) > 0 {
			next, wait = wait, min(2*wait, sp.every)
		} else {
			wait = first
		}
		t, due := time.NewTimer(next), time.Now().Add(next)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
				waiting = false
			case <-sp.kick:
				// Soon, not at once: whatever failed the call's own try
				// has likely not healed yet.
				wait = first
				if time.Until(due) > first {
					t.Reset(first)
					due = time.Now().Add(first)
				}
			}
		}
	}
}

// retryAll tries every spooled deposit not in use once, and returns how
// many are still waiting.
func (sp *spool) retryAll(ctx context.Context) int {
	ids, err := sp.list()
	if err != nil {
		sp.v.s.log.Error("voicemail: spool", "err", err)
		return 1
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		sp.mu.Lock()
		busy := sp.busy[id]
		sp.busy[id] = true
		sp.mu.Unlock()
		if busy {
			continue
		}
		err := sp.retry(ctx, id)
		sp.release(id)
		if errors.Is(err, errPutFailed) {
			// The ring cannot store recordings now; the others would wait
			// on it too (a Put may take minutes): next round. A mailbox
			// write that failed is one user's replicas: go on.
			break
		}
	}
	return int(sp.waiting.Load())
}

// retry tries once to store spooled deposit id: its recording on the
// ring (unless a try did), then its mailbox entry, then the NOTIFYs. It
// returns an error only when the ring failed it.
func (sp *spool) retry(ctx context.Context, id string) error {
	v := sp.v
	b, err := os.ReadFile(sp.path(id, ".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // stored meanwhile
	}
	var n spoolNote
	if err == nil {
		err = json.Unmarshal(b, &n)
	}
	if err == nil && n.ID != id {
		err = fmt.Errorf("it names message %q", n.ID)
	}
	if err != nil {
		v.s.log.Error("voicemail: unreadable spool note; moved aside (.bad), the deposit is not retried", "file", sp.path(id, ".json"), "err", err)
		os.Rename(sp.path(id, ".wav"), sp.path(id, ".wav.bad"))
		if os.Rename(sp.path(id, ".json"), sp.path(id, ".json.bad")) == nil {
			sp.waiting.Add(-1)
		}
		return nil
	}
	n.Message.ID = id
	if n.Version == 0 {
		n.Version = entryVersion(n.Message.At)
	}
	if n.Message.Duration == 0 { // a peer died during the call
		fi, err := os.Stat(sp.path(id, ".wav"))
		if errors.Is(err, fs.ErrNotExist) && n.Message.Cap == (coding.Cap{}) {
			return sp.failed(n, fmt.Errorf("%w: %v", errNoRecording, err))
		}
		if err == nil && fi.Size() > media.HeaderSize {
			n.Message.Duration = time.Duration((fi.Size()-media.HeaderSize)/2) * time.Second / media.SampleRate
		}
	}
	if n.Message.Duration < v.cfg.MinLength {
		v.dropped.Add(1)
		v.s.log.Info("voicemail: spooled recording too short, dropped", "aor", n.AOR, "id", id, "duration", n.Message.Duration)
		if n.Message.Cap != (coding.Cap{}) {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v.cfg.Objects.Remove(rctx, n.Message.Cap)
			cancel()
		}
		sp.remove(id, true)
		return nil
	}
	if n.Message.Cap == (coding.Cap{}) {
		if err := sp.putRecording(ctx, &n); err != nil {
			return sp.failed(n, err)
		}
		// Keep the cap, so that a later try stores the entry only.
		if err := sp.save(n, true); err != nil {
			v.s.log.Warn("voicemail: spool note", "id", id, "err", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, v.s.cfg.RecordTimeout)
	defer cancel()
	if _, err := v.boxes.store(wctx, n.AOR, n.Message, n.Version); err != nil {
		return sp.failed(n, err)
	}
	sp.remove(id, true)
	sp.stored.Add(1)
	v.deposits.Add(1)
	v.s.log.Info("voicemail: spooled deposit stored", "aor", n.AOR, "id", id, "duration", n.Message.Duration, "tries", n.Tries+1)
	v.notifyDeposit(wctx, n.AOR)
	return nil
}

// putRecording stores the spooled recording of n on the ring and sets
// its Cap (and its Duration, when the call never ended on this peer).
func (sp *spool) putRecording(ctx context.Context, n *spoolNote) error {
	v := sp.v
	f, err := os.Open(sp.path(n.ID, ".wav"))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %v", errNoRecording, err)
	}
	if err != nil { // too many open files, an I/O error: try again later
		return fmt.Errorf("open the spooled recording: %w", err)
	}
	defer f.Close()
	// A whole recording is at most MaxLength of audio: a generous bound
	// on storing it, so that one stuck try does not hold the others.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, _, err := v.cfg.Objects.Put(pctx, io.Reader(f), v.recordingParams())
	if err != nil {
		return fmt.Errorf("%w: %w", errPutFailed, err)
	}
	n.Message.Cap = c
	return nil
}

// failed records a failed try in the note, and returns err when the
// ring failed it (nil when the deposit is dropped: its recording is gone).
func (sp *spool) failed(n spoolNote, err error) error {
	if errors.Is(err, errNoRecording) {
		sp.v.s.log.Error("voicemail: spooled recording missing; deposit dropped", "aor", n.AOR, "id", n.ID, "err", err)
		sp.remove(n.ID, true)
		return nil
	}
	n.Tries++
	n.Err = err.Error()
	if serr := sp.save(n, true); serr != nil {
		sp.v.s.log.Warn("voicemail: spool note", "id", n.ID, "err", serr)
	}
	sp.v.s.log.Warn("voicemail: spooled deposit not stored yet; will retry", "aor", n.AOR, "id", n.ID, "tries", n.Tries, "err", err)
	return err
}
