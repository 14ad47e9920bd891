package sipvm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/media"
	"github.com/voicering/voicering/store/peer"
	"github.com/voicering/voicering/store/ring"
)

// vmPhone is a Go UA with media: it answers INVITEs with a fixed
// failure, takes NOTIFYs and BYEs, and places calls with an SDP offer.
type vmPhone struct {
	t        *testing.T
	user     string
	host     string
	port     int
	client   *sipgo.Client
	dialog   *sipgo.DialogUA
	notifies chan string // message-summary bodies
	byes     chan struct{}
}

func newVMPhone(t *testing.T, user string) *vmPhone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ph := &vmPhone{t: t, user: user, host: "127.0.0.1", port: conn.LocalAddr().(*net.UDPAddr).Port,
		notifies: make(chan string, 16), byes: make(chan struct{}, 4)}
	if ph.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(ph.host), sipgo.WithClientPort(ph.port)); err != nil {
		t.Fatal(err)
	}
	ph.dialog = &sipgo.DialogUA{Client: ph.client, ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: ph.host, Port: ph.port}}}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 480, "Not Answering", nil))
	})
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		select {
		case ph.notifies <- string(req.Body()):
		default: // nobody waits for it (waitNotify reads them as they come)
		}
	})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		ph.byes <- struct{}{}
	})
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeUDP(conn) }()
	t.Cleanup(func() { conn.Close(); ua.Close(); <-done })
	return ph
}

func (ph *vmPhone) register(server, password string) {
	ph.t.Helper()
	ctx, cancel := context.WithTimeout(ph.t.Context(), 10*time.Second)
	defer cancel()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	req.SetDestination(server)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: ph.user, Host: domain}}
	from := &sip.FromHeader{Address: to.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(sip.HeaderClone(&ph.dialog.ContactHDR))
	req.AppendHeader(sip.NewHeader("Expires", "600"))
	res, err := ph.client.Do(ctx, req)
	if err == nil && res.StatusCode == 401 {
		req.SetDestination(server)
		res, err = ph.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: ph.user, Password: password})
	}
	if err != nil || res.StatusCode != 200 {
		ph.t.Fatalf("%s registers: got %v, %v, want 200", ph.user, res, err)
	}
}

// subscribe subscribes to the phone's own message summary.
func (ph *vmPhone) subscribe(server, password string) {
	ph.t.Helper()
	ctx, cancel := context.WithTimeout(ph.t.Context(), 10*time.Second)
	defer cancel()
	req := sip.NewRequest(sip.SUBSCRIBE, sip.Uri{Scheme: "sip", User: ph.user, Host: domain})
	req.SetDestination(server)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: ph.user, Host: domain}}
	from := &sip.FromHeader{Address: to.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(sip.HeaderClone(&ph.dialog.ContactHDR))
	req.AppendHeader(sip.NewHeader("Event", "message-summary"))
	req.AppendHeader(sip.NewHeader("Accept", "application/simple-message-summary"))
	req.AppendHeader(sip.NewHeader("Expires", "600"))
	res, err := ph.client.Do(ctx, req)
	if err == nil && res.StatusCode == 401 {
		req.SetDestination(server)
		res, err = ph.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: ph.user, Password: password})
	}
	if err != nil || res.StatusCode != 200 {
		ph.t.Fatalf("%s subscribes: got %v, %v, want 200", ph.user, res, err)
	}
}

// waitNotify waits for a NOTIFY whose body says Voice-Message: want.
func (ph *vmPhone) waitNotify(want string) {
	ph.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case body := <-ph.notifies:
			if strings.Contains(body, "Voice-Message: "+want) {
				return
			}
		case <-deadline:
			ph.t.Fatalf("no NOTIFY with Voice-Message: %s", want)
		}
	}
}

// media call: a dialog and an RTP session.
type mediaCall struct {
	d     *sipgo.DialogClientSession
	rtp   *media.Session
	conn  net.PacketConn
	mu    sync.Mutex
	heard []int16
	stop  context.CancelFunc
	done  chan error
}

func (mc *mediaCall) samples() int {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return len(mc.heard)
}

// call invites sip:callee@domain through server with an offer of fmts;
// auth answers a digest challenge. It returns the final status and, on
// 200, the call with its RTP running.
// waitHeard waits until the call has heard at least n samples.
func (mc *mediaCall) waitHeard(t *testing.T, what string, n int) {
	t.Helper()
	waitFor(t, what, 20*time.Second, func() error {
		if got := mc.samples(); got < n {
			return fmt.Errorf("heard %d samples of %d", got, n)
		}
		return nil
	})
}

// waitToHear waits until the call has heard start, and n samples from
// where it begins, and returns those n samples.
func (mc *mediaCall) waitToHear(t *testing.T, what string, start []int16, n int) []int16 {
	t.Helper()
	var got []int16
	waitFor(t, what, 40*time.Second, func() error {
		mc.mu.Lock()
		defer mc.mu.Unlock()
		at := indexOf(mc.heard, start)
		if at < 0 || len(mc.heard) < at+n {
			return fmt.Errorf("heard %d samples, %s at %d", len(mc.heard), what, at)
		}
		got = slices.Clone(mc.heard[at : at+n])
		return nil
	})
	return got
}

// sameSamples counts the samples of want that got holds at the same place.
func sameSamples(got, want []int16) int {
	same := 0
	for i := range min(len(got), len(want)) {
		if got[i] == want[i] {
			same++
		}
	}
	return same
}

func (ph *vmPhone) call(server, callee, fmts, password string) (int, *mediaCall) {
	ph.t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		ph.t.Fatal(err)
	}
	ph.t.Cleanup(func() { conn.Close() })
	port := conn.LocalAddr().(*net.UDPAddr).Port
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " + strconv.Itoa(port) + " RTP/AVP " + fmts + "\r\na=rtpmap:101 telephone-event/8000\r\n"
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: callee, Host: domain})
	host, p, _ := net.SplitHostPort(server)
	pn, _ := strconv.Atoi(p)
	req.AppendHeader(&sip.RouteHeader{Address: sip.Uri{Host: host, Port: pn, UriParams: sip.HeaderParams{{K: "lr", V: ""}}}})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(offer))
	ctx, cancel := context.WithTimeout(ph.t.Context(), 20*time.Second)
	defer cancel()
	d, err := ph.dialog.WriteInvite(ctx, req)
	if err != nil {
		ph.t.Fatalf("invite: %v", err)
	}
	err = d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: ph.user, Password: password})
	if d.InviteResponse != nil && d.InviteResponse.StatusCode != 200 {
		return d.InviteResponse.StatusCode, nil
	}
	if err != nil {
		ph.t.Fatalf("wait answer: %v", err)
	}
	if err := d.Ack(ctx); err != nil {
		ph.t.Fatalf("ack: %v", err)
	}
	remote, err := media.ParseSDP(d.InviteResponse.Body())
	if err != nil || len(remote.Codecs) != 1 {
		ph.t.Fatalf("answer SDP %q: %+v, %v", d.InviteResponse.Body(), remote, err)
	}
	mc := &mediaCall{d: d, conn: conn, rtp: media.NewSession(conn, remote.Addr, remote.Codecs[0], remote.DTMF), done: make(chan error, 1)}
	rctx, stop := context.WithCancel(context.Background())
	mc.stop = stop
	go func() {
		mc.done <- mc.rtp.Receive(rctx, 5, media.Sink{Audio: func(p []int16) {
			mc.mu.Lock()
			mc.heard = append(mc.heard, p...)
			mc.mu.Unlock()
		}})
	}()
	ph.t.Cleanup(func() { stop(); <-mc.done; d.Close() })
	return 200, mc
}

func readWAV(t *testing.T, path string) []int16 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := media.ReadPCM(f)
	if err != nil {
		t.Fatal(err)
	}
	return pcm
}

// g711 returns pcm after a PCMU round trip.
func g711(pcm []int16) []int16 { return media.PCMU.Decode(nil, media.PCMU.Encode(nil, pcm)) }

// indexOf finds needle in hay by exact match; -1 when absent.
func indexOf(hay, needle []int16) int {
outer:
	for i := 0; i+len(needle) <= len(hay); i++ {
		for j := range needle {
			if hay[i+j] != needle[j] {
				continue outer
			}
		}
		return i
	}
	return -1
}

// TestVoicemail is issue 6's scenario on a 6-peer ring: bob leaves alice
// a message through peer 2, MWI tells alice, peers die, alice listens
// through peer 5 and deletes it; then bad calls.
func TestVoicemail(t *testing.T) {
	key := sipvm.NewMailboxKey()
	n := 0
	r := newSIPRing(t, 6, func(c *sipvm.Config) {
		c.VM = &sipvm.VoicemailConfig{Key: key, Silence: 2 * time.Second, MenuTimeout: 3 * time.Second}
		if n == 0 { // peer 0 cuts calls short, for the max-length case
			c.VM.MaxLength = 2 * time.Second
		}
		n++
	})
	ctx := t.Context()
	for _, u := range []string{"alice", "bob"} {
		if err := r.sip(0).Accounts().Add(ctx, u, domain, u+"-secret"); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob := newVMPhone(t, "alice"), newVMPhone(t, "bob")
	alice.register(r.sip(1).Addr(), "alice-secret")
	alice.subscribe(r.sip(3).Addr(), "alice-secret")
	alice.waitNotify("0/0")

	greeting := readWAV(t, "assets/greeting.wav")
	beep := readWAV(t, "assets/beep.wav")
	speech := readWAV(t, "../testdata/audio/speech.wav")
	prompt := (len(greeting) + len(beep) + media.FrameSamples - 1) / media.FrameSamples * media.FrameSamples
	aor := sipvm.AOR("alice", domain)

	t.Run("bob leaves a message through peer 2", func(t *testing.T) {
		code, mc := bob.call(r.sip(2).Addr(), "alice", "0 8 101", "")
		if code != 200 {
			t.Fatalf("got %d, want 200 from voicemail", code)
		}
		mc.waitHeard(t, "the greeting and beep", prompt)
		if got := indexOf(mc.heard, g711(greeting[:1600])); got < 0 {
			t.Errorf("bob did not hear the greeting")
		}
		if err := mc.rtp.Play(ctx, speech); err != nil {
			t.Fatal(err)
		}
		if err := mc.d.Bye(ctx); err != nil {
			t.Fatalf("bye: %v", err)
		}
		alice.waitNotify("1/0")
		msgs, _, err := r.sip(4).Mailboxes().List(ctx, aor)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("mailbox: got %v, %v, want one message", msgs, err)
		}
		want := time.Duration(len(speech)) * time.Second / media.SampleRate
		if d := msgs[0].Duration - want; d < -100*time.Millisecond || d > 100*time.Millisecond {
			t.Errorf("message lasts %s, want %s ± 100ms", msgs[0].Duration, want)
		}
		if !strings.Contains(msgs[0].From, "bob") || msgs[0].Folder != sipvm.FolderNew {
			t.Errorf("message %+v, want from bob, new", msgs[0])
		}
		// Peers that store the record see no caller, no cap.
		es, err := r.peers[0].p.Records().Get(ctx, sipvm.MailboxKey(aor))
		if err != nil || len(es) != 1 || strings.Contains(string(es[0].Value), "bob") || strings.Contains(string(es[0].Value), "cap") {
			t.Errorf("stored entries %d, %v: want one sealed entry", len(es), err)
		}
	})

	t.Run("no common codec gets 488", func(t *testing.T) {
		if code, _ := bob.call(r.sip(1).Addr(), "alice", "9 18", ""); code != 488 {
			t.Fatalf("got %d, want 488", code)
		}
	})

	t.Run("garbage, a DTMF flood and no audio: silence timeout, nothing kept", func(t *testing.T) {
		before := r.sip(4).VoicemailStats()
		code, mc := bob.call(r.sip(4).Addr(), "alice", "0 101", "")
		if code != 200 {
			t.Fatalf("got %d, want 200", code)
		}
		to := mc.rtp.Remote()
		for i := range 200 {
			mc.conn.WriteTo([]byte{0x80, 0, byte(i), 1, 2, 3}, to) // truncated RTP
			mc.conn.WriteTo([]byte("not rtp at all"), to)
		}
		for range 30 {
			mc.rtp.SendDigit(ctx, '5', 20*time.Millisecond)
		}
		waitChan(t, "voicemail to hang up on silence", bob.byes)
		waitFor(t, "the silent call to be dropped", 10*time.Second, func() error {
			if got := r.sip(4).VoicemailStats(); got.Dropped != before.Dropped+1 || got.Deposits != before.Deposits {
				return fmt.Errorf("stats %+v, before %+v", got, before)
			}
			return nil
		})
	})

	t.Run("a call longer than the maximum is cut and kept", func(t *testing.T) {
		code, mc := bob.call(r.sip(0).Addr(), "alice", "0 101", "")
		if code != 200 {
			t.Fatalf("got %d, want 200", code)
		}
		mc.waitHeard(t, "the greeting and beep", prompt)
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go mc.rtp.Play(pctx, speech)
		waitChan(t, "voicemail to hang up at the maximum", bob.byes)
		cancel()
		alice.waitNotify("2/0")
		msgs, _, err := r.sip(0).Mailboxes().List(ctx, aor)
		if err != nil || len(msgs) != 2 || msgs[0].Duration > 2100*time.Millisecond {
			t.Fatalf("got %+v, %v, want a newest message of at most 2s", msgs, err)
		}
		if err := r.sip(0).Mailboxes().Delete(ctx, aor, msgs[0].ID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("alice listens through peer 4 on a healthy ring and hangs up", func(t *testing.T) {
		code, mc := alice.call(r.sip(4).Addr(), "voicemail", "0 101", "alice-secret")
		if code != 200 {
			t.Fatalf("got %d, want 200", code)
		}
		msg := g711(speech)
		mc.waitToHear(t, "the start of the message", msg[:800], 800)
		if err := mc.d.Bye(ctx); err != nil {
			t.Fatalf("bye: %v", err)
		}
		if fa := r.sip(4).VoicemailStats().FirstAudio; len(fa) == 0 {
			t.Errorf("no time-to-first-audio measured")
		} else {
			t.Logf("time to first audio on a healthy ring: %v", fa)
		}
	})

	// The depositing peer and one more die: total−needed = 2 of the
	// default 4-of-6 scheme, every peer holding one shard per segment.
	r.kill(2)
	r.kill(3)

	t.Run("alice listens through peer 5 and deletes it", func(t *testing.T) {
		var code int
		var mc *mediaCall
		waitFor(t, "voicemail to answer alice after the loss", 30*time.Second, func() error {
			if code, mc = alice.call(r.sip(5).Addr(), "voicemail", "0 101", "alice-secret"); code != 200 {
				return fmt.Errorf("got %d", code)
			}
			return nil
		})
		msg := g711(speech)
		if same := sameSamples(mc.waitToHear(t, "the message", msg[:800], len(msg)), msg); same < len(msg)*99/100 {
			t.Fatalf("message: %d of %d samples as bob sent them", same, len(msg))
		}
		if err := mc.rtp.SendDigit(ctx, '7', 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		alice.waitNotify("0/0")
		waitChan(t, "voicemail to hang up", alice.byes)
		if fa := r.sip(5).VoicemailStats().FirstAudio; len(fa) == 0 {
			t.Errorf("no time-to-first-audio measured")
		} else {
			t.Logf("time to first audio with 2 of 6 peers dead: %v", fa)
		}
	})

}

// frames is the samples a played prompt takes: whole 20 ms frames.
func frames(pcm ...[]int16) int {
	n := 0
	for _, p := range pcm {
		n += (len(p) + media.FrameSamples - 1) / media.FrameSamples * media.FrameSamples
	}
	return n
}

// An owner with an empty mailbox records a greeting longer than a ring
// write's timeout; callers then hear it, and recording another removes
// the first from the ring.
func TestGreeting(t *testing.T) {
	key := sipvm.NewMailboxKey()
	logs := &syncBuf{}
	r := newSIPRing(t, 4, func(c *sipvm.Config) {
		c.VM = &sipvm.VoicemailConfig{Key: key, Silence: 3 * time.Second, MenuTimeout: 3 * time.Second,
			Scheme: coding.Scheme{Needed: 2, Total: 3}}
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := t.Context()
	if err := r.sip(0).Accounts().Add(ctx, "alice", domain, "alice-secret"); err != nil {
		t.Fatal(err)
	}
	aor := sipvm.AOR("alice", domain)
	alice, bob := newVMPhone(t, "alice"), newVMPhone(t, "bob")
	speech := readWAV(t, "../testdata/audio/speech.wav")
	prompt := func(name string) []int16 { return readWAV(t, "assets/"+name+".wav") }
	youHave := frames(prompt("youhave"), prompt("n0"), prompt("new"), prompt("and"), prompt("n0"), prompt("saved"), prompt("messages"))

	// record has alice record words as her greeting through a peer; she
	// ends with '#', or hangs up instead when hangUp is set.
	record := func(through int, words []int16, hangUp bool) *sipvm.Message {
		t.Helper()
		code, mc := alice.call(r.sip(through).Addr(), "voicemail", "0 101", "alice-secret")
		if code != 200 {
			t.Fatalf("alice calls voicemail: got %d, want 200", code)
		}
		// Into "no more messages; press 0 to record a new greeting".
		mc.waitHeard(t, "the message count", youHave+media.FrameSamples)
		if err := mc.rtp.SendDigit(ctx, '0', 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		// The key cut the menu short: wait for the end of the record
		// prompt's beep, when recording starts.
		beep := prompt("beep")
		mc.waitToHear(t, "the beep", g711(beep[:800]), len(beep))
		// A breath after the beep, as people take, then the words.
		if err := mc.rtp.Play(ctx, append(make([]int16, media.SampleRate/5), words...)); err != nil {
			t.Fatal(err)
		}
		if hangUp {
			if err := mc.d.Bye(ctx); err != nil {
				t.Fatalf("bye: %v", err)
			}
			waitFor(t, "the cut-off greeting to be dropped", 10*time.Second, func() error {
				if !strings.Contains(logs.String(), "greeting not kept") {
					return fmt.Errorf("not yet")
				}
				return nil
			})
		} else {
			if err := mc.rtp.SendDigit(ctx, '#', 60*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			waitChan(t, "voicemail to say goodbye and hang up", alice.byes)
		}
		_, g, err := r.sip(2).Mailboxes().List(ctx, aor)
		if err != nil || g == nil {
			t.Fatalf("greeting after recording: %v, %v", g, err)
		}
		if hangUp {
			return g
		}
		want := time.Duration(len(words)) * time.Second / media.SampleRate
		if g.Duration < want || g.Duration > want+1500*time.Millisecond {
			t.Errorf("greeting lasts %s, want %s to %s more", g.Duration, want, 1500*time.Millisecond)
		}
		return g
	}

	first := record(1, speech, false)
	code, mc := bob.call(r.sip(3).Addr(), "alice", "0 101", "")
	if code != 200 {
		t.Fatalf("bob calls alice: got %d, want 200 from voicemail", code)
	}
	heard := g711(speech)
	mc.waitToHear(t, "alice's greeting", heard[:800], 800)
	if err := mc.d.Bye(ctx); err != nil {
		t.Fatalf("bye: %v", err)
	}

	// A new greeting replaces the first, whose recording leaves the ring.
	second := record(0, speech[:len(speech)/2], false)
	if second.Cap == first.Cap {
		t.Fatalf("the second greeting has the first's cap")
	}
	waitFor(t, "the first greeting to be removed", 10*time.Second, func() error {
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := r.peers[2].p.Objects().Get(gctx, first.Cap, io.Discard); !errors.Is(err, ring.ErrNotFound) {
			return fmt.Errorf("reading the first greeting: got %v, want %v", err, ring.ErrNotFound)
		}
		return nil
	})
	var b bytes.Buffer
	if err := r.peers[2].p.Objects().Get(ctx, second.Cap, &b); err != nil {
		t.Errorf("the second greeting: %v", err)
	}

	// Hanging up before '#' leaves the greeting as it was.
	if g := record(3, speech, true); g.Cap != second.Cap {
		t.Errorf("after a cut-off recording the greeting is %+v, want the second, %+v", g, second)
	}
}

// A mailbox changed outside SIP (as `voicering vm rm` changes it) is
// announced through a SIP peer's sipvm.MethodNotifyMailbox, called over
// the ring as the CLI calls it; a peer without voicemail does not know the
// method.
func TestNotifyMailboxOverTheRing(t *testing.T) {
	key := sipvm.NewMailboxKey()
	n := 0
	r := newSIPRing(t, 3, func(c *sipvm.Config) {
		if n > 0 { // peer 0 serves SIP without voicemail
			c.VM = &sipvm.VoicemailConfig{Key: key, Scheme: coding.Scheme{Needed: 2, Total: 3}}
		}
		n++
	})
	ctx := t.Context()
	if err := r.sip(1).Accounts().Add(ctx, "alice", domain, "alice-secret"); err != nil {
		t.Fatal(err)
	}
	aor := sipvm.AOR("alice", domain)
	alice := newVMPhone(t, "alice")
	alice.subscribe(r.sip(1).Addr(), "alice-secret")
	alice.waitNotify("0/0")

	c, err := peer.NewClient(peer.ClientConfig{Peers: []string{r.peers[0].p.Self().Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	notify := func(i int, body string) (string, error) {
		b, err := c.Call(ctx, r.peers[i].p.Self().Addr, sipvm.MethodNotifyMailbox, []byte(body))
		return string(b), err
	}

	boxes, err := sipvm.NewMailboxes(c.Records(), key) // the CLI's view
	if err != nil {
		t.Fatal(err)
	}
	msg, err := boxes.Store(ctx, aor, sipvm.Message{From: "sip:bob@example.org", At: time.Now(), Duration: 2 * time.Second, Folder: sipvm.FolderNew})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := notify(2, aor); err != nil || got != "" {
		t.Fatalf("notify through peer 2: %q, %v, want an empty answer", got, err)
	}
	alice.waitNotify("1/0")
	if err := boxes.Delete(ctx, aor, msg.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := notify(1, aor); err != nil || got != "" {
		t.Fatalf("notify through peer 1: %q, %v, want an empty answer", got, err)
	}
	alice.waitNotify("0/0")

	if _, err := notify(2, "sip:alice@elsewhere.org"); !errors.Is(err, dht.ErrBadRequest) {
		t.Errorf("another domain's address: got %v, want %v", err, dht.ErrBadRequest)
	}
	if _, err := notify(0, aor); !errors.Is(err, dht.ErrUnknownMethod) {
		t.Errorf("a peer without voicemail: got %v, want %v", err, dht.ErrUnknownMethod)
	}
}
