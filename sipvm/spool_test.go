package sipvm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/media"
)

// spoolFiles lists the files in a spool directory, sorted.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	slices.Sort(names)
	return names
}

// A deposit the ring cannot store when the caller hangs up (one peer too
// few for 4-of-6 coding) stays in the answering peer's spool, outlives
// that peer, and is stored once a peer with the spool runs on a ring
// that can take it: the owner's lamp lights and the message plays back
// as the caller said it.
func TestDepositSpooledUntilTheRingTakesIt(t *testing.T) {
	key := sipvm.NewMailboxKey()
	spools := t.TempDir()
	next := 0
	spoolOf := map[int]string{} // a peer's spool when not its own
	r := newSIPRing(t, 6, func(c *sipvm.Config) {
		dir := filepath.Join(spools, strconv.Itoa(next))
		if d, ok := spoolOf[next]; ok {
			dir = d
		}
		c.VM = &sipvm.VoicemailConfig{Key: key, Silence: 2 * time.Second, RetryEvery: 300 * time.Millisecond, Spool: dir}
		next++
	})
	ctx := t.Context()
	if err := r.sip(0).Accounts().Add(ctx, "alice", domain, "alice-secret"); err != nil {
		t.Fatal(err)
	}
	aor := sipvm.AOR("alice", domain)
	alice, bob := newVMPhone(t, "alice"), newVMPhone(t, "bob")
	alice.subscribe(r.sip(1).Addr(), "alice-secret")
	alice.waitNotify("0/0")

	r.kill(5) // five live peers: 4-of-6 coding cannot place a segment
	speech := readWAV(t, "../testdata/audio/speech.wav")
	code, mc := bob.call(r.sip(0).Addr(), "alice", "0 101", "")
	if code != 200 {
		t.Fatalf("got %d, want 200 from voicemail", code)
	}
	greeting, beep := readWAV(t, "assets/greeting.wav"), readWAV(t, "assets/beep.wav")
	mc.waitHeard(t, "the greeting and beep", (len(greeting)+len(beep)+media.FrameSamples-1)/media.FrameSamples*media.FrameSamples)
	if err := mc.rtp.Play(ctx, speech); err != nil {
		t.Fatal(err)
	}
	if err := mc.d.Bye(ctx); err != nil {
		t.Fatalf("bye: %v", err)
	}
	spool0 := filepath.Join(spools, "0")
	waitFor(t, "the deposit to be spooled", 30*time.Second, func() error {
		if st := r.sip(0).VoicemailStats(); st.Spooled != 1 || st.Deposits != 0 {
			return fmt.Errorf("peer 0 stats %+v, want 1 spooled, 0 deposits; spool %v", st, spoolFiles(t, spool0))
		}
		return nil
	})
	msgs, _, err := r.sip(2).Mailboxes().List(ctx, aor)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("mailbox while the ring is short: %v, %v, want empty", msgs, err)
	}
	var first struct {
		ID    string `json:"id"`
		Tries int    `json:"tries"`
		Err   string `json:"err"`
	}
	notes, _ := filepath.Glob(filepath.Join(spool0, "*.json"))
	if len(notes) != 1 {
		t.Fatalf("spool notes %v, want one", notes)
	}
	if b, err := os.ReadFile(notes[0]); err != nil || json.Unmarshal(b, &first) != nil || first.Tries < 1 || first.Err == "" {
		t.Errorf("spool note %s: %+v (%v), want a failed try and its error", notes[0], first, err)
	}
	if err := mc.d.Close(); err != nil {
		t.Log(err)
	}

	// The answering peer stops with the deposit spooled: the recording
	// and its note stay on its disk.
	r.kill(0)
	files := spoolFiles(t, spool0)
	if len(files) != 2 || !strings.HasSuffix(files[0], ".json") || !strings.HasSuffix(files[1], ".wav") {
		t.Fatalf("spool after the peer stopped: %v, want ID.json and ID.wav", files)
	}
	wav, err := os.ReadFile(filepath.Join(spool0, files[1]))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(wav)-media.HeaderSize, 2*len(speech); got < want*98/100 {
		t.Errorf("spooled %d bytes of samples, want about %d (the whole message)", got, want)
	}

	// It restarts on that spool (peer 6), and a new peer (7) brings the
	// ring back to six. Peer 7's spool holds what a peer killed during a
	// call leaves: the note written at the beep, and the audio so far.
	spoolOf[6] = spool0
	spool7 := filepath.Join(spools, "7")
	if err := os.MkdirAll(spool7, 0o700); err != nil {
		t.Fatal(err)
	}
	note := `{"aor":"` + aor + `","id":"00c0ffee00c0ffee","message":{"from":"sip:carol@example.org","at":"2026-11-22T06:00:00Z","folder":"new"}}`
	if err := os.WriteFile(filepath.Join(spool7, "00c0ffee00c0ffee.json"), []byte(note), 0o600); err != nil {
		t.Fatal(err)
	}
	var cut bytes.Buffer
	media.WriteHeader(&cut, media.UnknownSize)
	cut.Write(media.PCMBytes(nil, speech[:3*media.SampleRate]))
	if err := os.WriteFile(filepath.Join(spool7, "00c0ffee00c0ffee.wav"), cut.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	six := r.add()
	seven := r.add()
	waitFor(t, "the spooled deposits to reach the mailbox", 60*time.Second, func() error {
		msgs, _, err = r.sip(2).Mailboxes().List(ctx, aor)
		if err != nil || len(msgs) != 2 {
			return fmt.Errorf("mailbox %v, %v", msgs, err)
		}
		return nil
	})
	alice.waitNotify("2/0")
	carol, msg := msgs[0], msgs[1]
	if msg.ID == "00c0ffee00c0ffee" {
		carol, msg = msg, carol
	}
	if carol.ID != "00c0ffee00c0ffee" || carol.From != "sip:carol@example.org" || carol.Duration != 3*time.Second {
		t.Errorf("the message of the killed call: %+v, want carol's, 3s", carol)
	}
	want := time.Duration(len(speech)) * time.Second / media.SampleRate
	if d := msg.Duration - want; d < -100*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("message lasts %s, want %s ± 100ms", msg.Duration, want)
	}
	if !strings.Contains(msg.From, "bob") || msg.Folder != sipvm.FolderNew || msg.ID != first.ID {
		t.Errorf("message %+v, want from bob, new, ID %s as spooled", msg, first.ID)
	}
	var got bytes.Buffer
	if err := r.peers[3].p.Objects().Get(ctx, msg.Cap, &got); err != nil {
		t.Fatalf("read the message: %v", err)
	}
	pcm, err := media.ReadPCM(&got)
	if err != nil {
		t.Fatal(err)
	}
	// All of it but the last 80 ms, which may arrive after bob's BYE.
	heard := g711(speech)
	heard = heard[:len(heard)-4*media.FrameSamples]
	at := indexOf(pcm, heard[:800])
	if at < 0 || len(pcm) < at+len(heard) {
		t.Fatalf("the stored message (%d samples) does not hold what bob said (at %d)", len(pcm), at)
	}
	if same := sameSamples(pcm[at:], heard); same < len(heard)*99/100 {
		t.Errorf("message: %d of %d samples as bob sent them", same, len(heard))
	}
	st := r.sip(six).VoicemailStats()
	if st.Spooled != 0 || st.SpoolStored != 1 || st.Deposits != 1 {
		t.Errorf("peer 6 stats %+v, want 0 spooled, 1 stored from the spool, 1 deposit", st)
	}
	if st := r.sip(seven).VoicemailStats(); st.Spooled != 0 || st.SpoolStored != 1 {
		t.Errorf("peer 7 stats %+v, want 0 spooled, 1 stored from the spool", st)
	}
	for _, dir := range []string{spool0, spool7} {
		if files := spoolFiles(t, dir); len(files) != 0 {
			t.Errorf("spool %s after the deposits landed: %v, want empty", dir, files)
		}
	}

	// alice deletes carol's message; a late repeat of its store (a peer
	// killed after the entry was written, before the spool was cleared)
	// must not bring it back.
	if err := r.sip(2).Mailboxes().Delete(ctx, aor, carol.ID); err != nil {
		t.Fatal(err)
	}
	capText, _ := carol.Cap.MarshalText()
	note2 := `{"aor":"` + aor + `","id":"00c0ffee00c0ffee","message":{"from":"sip:carol@example.org","at":"2026-11-22T06:00:00Z","duration":3000000000,"cap":"` + string(capText) + `","folder":"new"},"tries":1}`
	if err := os.WriteFile(filepath.Join(spool7, "00c0ffee00c0ffee.json"), []byte(note2), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the repeat to leave the spool", 30*time.Second, func() error {
		if files := spoolFiles(t, spool7); len(files) != 0 {
			return fmt.Errorf("spool holds %v", files)
		}
		return nil
	})
	msgs, _, err = r.sip(4).Mailboxes().List(ctx, aor)
	if err != nil || len(msgs) != 1 || msgs[0].ID != msg.ID {
		t.Errorf("mailbox after the repeat: %+v, %v, want bob's message only", msgs, err)
	}
	if st := r.sip(seven).VoicemailStats(); st.SpoolStored != 2 {
		t.Errorf("peer 7 stats %+v, want 2 stored from the spool (the repeat was stored, and lost to the deletion)", st)
	}
}
