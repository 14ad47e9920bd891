package sipvm_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/media"
)

var updatePCMU = flag.Bool("update-pcmu", false, "rewrite testdata/audio/speech.pcmu from speech.wav")

// speechPCMU is the test speech as raw G.711 mu-law, what the sipp
// caller streams (rtp_stream needs raw payload, 160 bytes a packet).
const speechPCMU = "../testdata/audio/speech.pcmu"

// TestSpeechPCMU checks that speech.pcmu is speech.wav through our
// G.711 encoder; -update-pcmu rewrites it.
func TestSpeechPCMU(t *testing.T) {
	want := media.PCMU.Encode(nil, readWAV(t, "../testdata/audio/speech.wav"))
	if *updatePCMU {
		if err := os.WriteFile(speechPCMU, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(speechPCMU)
	if err != nil {
		t.Fatalf("%v (run go test -run TestSpeechPCMU -update-pcmu ./sipvm to make it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes that are not speech.wav through PCMU (%d bytes): run with -update-pcmu", speechPCMU, len(got), len(want))
	}
	if len(got)%media.FrameSamples != 0 {
		t.Errorf("%s: %d bytes, not whole 20 ms packets of %d", speechPCMU, len(got), media.FrameSamples)
	}
}

// TestSippVoicemail has sipp call a user who is not registered and
// stream the test speech as PCMU RTP (testdata/sipp/voicemail.xml); the
// message must be stored whole: its length that of the speech ± 100 ms,
// its samples the speech's after G.711.
func TestSippVoicemail(t *testing.T) {
	sippPath(t)
	key := sipvm.NewMailboxKey()
	r := newSIPRing(t, 4, func(c *sipvm.Config) {
		c.VM = &sipvm.VoicemailConfig{Key: key, Silence: 3 * time.Second, Scheme: coding.Scheme{Needed: 2, Total: 4}}
	})
	ctx := t.Context()
	if err := r.sip(0).Accounts().Add(ctx, "alice", domain, "alice-secret"); err != nil {
		t.Fatal(err)
	}
	pcmu, err := os.ReadFile(speechPCMU)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "speech.pcmu"), pcmu, 0o644); err != nil {
		t.Fatal(err)
	}
	speech := time.Duration(len(pcmu)) * time.Second / media.SampleRate
	runSippIn(t, ctx, dir, 30*time.Second, "-sf", filepath.Join(sippDir(t), "voicemail.xml"), "-s", "alice", "-set", "domain", domain,
		"-d", strconv.Itoa(int((speech + 500*time.Millisecond).Milliseconds())), "-m", "1", r.sip(1).Addr())

	aor := sipvm.AOR("alice", domain)
	var msgs []sipvm.Message
	waitFor(t, "the message in the mailbox", 20*time.Second, func() error {
		msgs, _, err = r.sip(3).Mailboxes().List(ctx, aor)
		if err != nil || len(msgs) != 1 {
			return fmt.Errorf("mailbox: %d messages, %v; stats of the peer sipp called: %+v", len(msgs), err, r.sip(1).VoicemailStats())
		}
		return nil
	})
	if d := msgs[0].Duration - speech; d < -100*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("message lasts %s, want %s ± 100ms", msgs[0].Duration, speech)
	}
	var wav bytes.Buffer
	if err := r.peers[2].p.Objects().Get(ctx, msgs[0].Cap, &wav); err != nil {
		t.Fatal(err)
	}
	got, err := media.ReadPCM(&wav)
	if err != nil {
		t.Fatal(err)
	}
	want := media.PCMU.Decode(nil, pcmu)
	if at := indexOf(got, want[:800]); at < 0 || !slicesEqual(got[at:min(len(got), at+len(want))], want) {
		t.Errorf("the stored message (%d samples) does not hold the %d samples sipp sent", len(got), len(want))
	}
}

func slicesEqual(a, b []int16) bool {
	return bytes.Equal(media.PCMBytes(nil, a), media.PCMBytes(nil, b))
}
