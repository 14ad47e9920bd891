package sipvm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// Objects is the slice of the ring's erasure-coded objects voicemail
// needs; *ring.Objects is one.
type Objects interface {
	// Put stores what r yields, segment by segment as it is read, and
	// returns its cap once every shard and the manifest are placed.
	Put(ctx context.Context, r io.Reader, p coding.Params) (coding.Cap, *coding.Manifest, error)
	// Get writes the object of cap c to w, segment by segment.
	Get(ctx context.Context, c coding.Cap, w io.Writer) error
	// Remove deletes the object's shards and manifest (best effort).
	Remove(ctx context.Context, c coding.Cap) error
}

// Folders of a message.
const (
	FolderNew   = "new"
	FolderSaved = "saved"
)

// Message is one voicemail in a mailbox.
type Message struct {
	// ID names the message in its mailbox (16 hex digits).
	ID string `json:"-"`
	// From is the caller's From URI.
	From string `json:"from"`
	// At is when the recording started.
	At time.Time `json:"at"`
	// Duration is the length of the recording.
	Duration time.Duration `json:"duration"`
	// Cap reads the recording: a WAV, 16-bit PCM mono 8 kHz, whose
	// header sizes are media.UnknownSize (it was streamed while made).
	Cap coding.Cap `json:"cap"`
	// Folder is FolderNew or FolderSaved.
	Folder string `json:"folder"`
}

// greetingEntry is the mailbox entry naming the owner's recorded
// greeting (a Message whose Cap is the greeting's).
const greetingEntry = "greeting"

// MailboxKey is the key of the record holding aor's mailbox.
func MailboxKey(aor string) store.Key { return store.Key(dht.Key("mailbox:" + aor)) }

// ErrMailboxKey marks a mailbox key that is not 32 bytes, or an entry it
// cannot open (sealed under another key, or tampered with).
var ErrMailboxKey = errors.New("sipvm: mailbox key")

// Mailboxes reads and writes the sealed mailbox records of a ring. Every
// entry is sealed with XChaCha20-Poly1305 under the ring's 32-byte
// voicemail key, bound to its mailbox and entry name, so peers that store
// the record see neither callers nor caps, and cannot move an entry from
// one mailbox to another.
type Mailboxes struct {
	rec  Records
	aead interface {
		Seal(dst, nonce, plaintext, ad []byte) []byte
		Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
		NonceSize() int
	}
	now func() time.Time
}

// NewMailboxes reads mailboxes from rec with the ring's voicemail key.
func NewMailboxes(rec Records, key []byte) (*Mailboxes, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMailboxKey, err)
	}
	return &Mailboxes{rec: rec, aead: a, now: time.Now}, nil
}

// NewMailboxKey returns a fresh random voicemail key.
func NewMailboxKey() []byte {
	k := make([]byte, chacha20poly1305.KeySize)
	rand.Read(k)
	return k
}

func (m *Mailboxes) seal(aor, name string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, m.aead.NonceSize(), m.aead.NonceSize()+len(b)+16)
	rand.Read(nonce)
	return m.aead.Seal(nonce, nonce, b, []byte(aor+"\x00"+name)), nil
}

func (m *Mailboxes) open(aor, name string, b []byte, v any) error {
	n := m.aead.NonceSize()
	if len(b) < n {
		return fmt.Errorf("%w: entry %s too short", ErrMailboxKey, name)
	}
	pt, err := m.aead.Open(nil, b[:n], b[n:], []byte(aor+"\x00"+name))
	if err != nil {
		return fmt.Errorf("%w: cannot open entry %s of %s (another ring's key?)", ErrMailboxKey, name, aor)
	}
	return json.Unmarshal(pt, v)
}

// Mailbox is what Read finds in a mailbox.
type Mailbox struct {
	// Messages are the messages, newest first.
	Messages []Message
	// Greeting is the owner's recorded greeting, nil when none.
	Greeting *Message
	// Unreadable counts the entries that did not open: sealed under
	// another voicemail key (a peer that made its own), or tampered with.
	Unreadable int
}

// Read returns aor's mailbox. An empty or missing mailbox is no error.
func (m *Mailboxes) Read(ctx context.Context, aor string) (Mailbox, error) {
	var box Mailbox
	es, err := m.rec.Get(ctx, MailboxKey(aor))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return box, fmt.Errorf("sipvm: read the mailbox of %s: %w", aor, err)
	}
	for _, e := range es {
		var msg Message
		if m.open(aor, e.Name, e.Value, &msg) != nil {
			box.Unreadable++
			continue
		}
		msg.ID = e.Name
		if e.Name == greetingEntry {
			box.Greeting = &msg
			continue
		}
		box.Messages = append(box.Messages, msg)
	}
	slices.SortFunc(box.Messages, func(a, b Message) int { return b.At.Compare(a.At) })
	return box, nil
}

// List returns aor's messages, newest first, and its greeting (nil when
// none is recorded). Entries that do not open are skipped (Read counts
// them).
func (m *Mailboxes) List(ctx context.Context, aor string) (msgs []Message, greeting *Message, err error) {
	box, err := m.Read(ctx, aor)
	return box.Messages, box.Greeting, err
}

// Counts returns how many new and saved messages aor has.
func Counts(msgs []Message) (newN, saved int) {
	for _, m := range msgs {
		if m.Folder == FolderSaved {
			saved++
		} else {
			newN++
		}
	}
	return newN, saved
}

// Store writes msg into aor's mailbox (a new ID when msg.ID is empty)
// and returns it.
func (m *Mailboxes) Store(ctx context.Context, aor string, msg Message) (Message, error) {
	return m.store(ctx, aor, msg, uint64(m.now().UnixNano()))
}

// store is Store with the entry's version given: a retried write keeps
// the version of its first try, so a change made since wins over it.
func (m *Mailboxes) store(ctx context.Context, aor string, msg Message, version uint64) (Message, error) {
	if msg.ID == "" {
		msg.ID = newMessageID()
	}
	v, err := m.seal(aor, msg.ID, msg)
	if err != nil {
		return msg, err
	}
	e := store.Entry{Name: msg.ID, Value: v, Version: version}
	if err := m.rec.Put(ctx, MailboxKey(aor), e); err != nil {
		return msg, fmt.Errorf("sipvm: store message %s of %s: %w", msg.ID, aor, err)
	}
	return msg, nil
}

// SetGreeting records c as aor's greeting.
func (m *Mailboxes) SetGreeting(ctx context.Context, aor string, c coding.Cap, d time.Duration) error {
	_, err := m.Store(ctx, aor, Message{ID: greetingEntry, Cap: c, Duration: d, At: m.now()})
	return err
}

// Delete removes message id from aor's mailbox. The recording itself is
// removed by the caller (Objects.Remove), best effort.
func (m *Mailboxes) Delete(ctx context.Context, aor, id string) error {
	if err := m.rec.Delete(ctx, MailboxKey(aor), id); err != nil {
		return fmt.Errorf("sipvm: delete message %s of %s: %w", id, aor, err)
	}
	return nil
}
