package sipvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/coding"
	"github.com/voicering/voicering/sipvm/media"
)

// VoicemailConfig turns on the voicemail service of a Server: deposit,
// retrieval and MWI.
type VoicemailConfig struct {
	// Objects stores recordings (a peer's *ring.Objects). Required.
	Objects Objects
	// Key is the ring's 32-byte voicemail key: mailbox entries are sealed
	// under it. Every SIP peer of a ring holds the same key. Required.
	Key []byte
	// User is the user part of the voicemail URI the owners call to
	// listen, and subscribe to for MWI. Zero: "voicemail".
	User string
	// MediaIP is the address RTP is received at and put in SDP. Zero:
	// the server's advertised host.
	MediaIP net.IP
	// Scheme codes recordings. Zero: coding.DefaultScheme.
	Scheme coding.Scheme
	// SegmentSize is the plaintext bytes per segment of a recording.
	// Zero: 16 KiB, about one second of audio, so that when the caller
	// hangs up only the last second and the manifest remain to store.
	SegmentSize int
	// MaxLength ends a recording (the service hangs up). Zero: 180s.
	MaxLength time.Duration
	// Silence ends a recording when no audio above the silence level
	// (or no RTP at all) came for that long. Zero: 10s.
	Silence time.Duration
	// MinLength is the shortest recording kept. Zero: 1s.
	MinLength time.Duration
	// MenuTimeout is how long the retrieval menu waits for a key before
	// it moves on. Zero: 10s.
	MenuTimeout time.Duration
	// SubscriptionExpires bounds MWI subscriptions. Zero: 1h.
	SubscriptionExpires time.Duration
	// Spool is the directory where each deposit is kept, from its first
	// second, until it is stored in its mailbox (see spool). A deposit
	// the ring cannot store at the end of the call (too few live peers,
	// records unreachable) is tried again after a second, then at
	// doubling intervals up to RetryEvery, also after a restart, instead
	// of being lost. Zero: no spool; such a deposit is lost, and logged.
	// (ringpeer gives every SIP peer one in its data directory.)
	Spool string
	// RetryEvery is the longest wait between tries of a spooled deposit.
	// Zero: 30s.
	RetryEvery time.Duration
}

// VoicemailStats counts what the service did.
type VoicemailStats struct {
	Deposits, Dropped, Retrievals, Notifies int64
	// Spooled counts the deposits waiting in the spool for the ring to
	// take them; SpoolStored those the spool's retries stored (they are
	// among Deposits).
	Spooled, SpoolStored int64
	// FirstAudio is the time from asking the ring for a message to its
	// first audio packet sent, for each message played (the last 1000).
	FirstAudio []time.Duration
}

// voicemail is the service; it lives inside its Server.
type voicemail struct {
	s       *Server
	cfg     VoicemailConfig
	boxes   *Mailboxes
	prompts prompts
	dialogs *sipgo.DialogServerCache
	spool   *spool // nil: none

	mwiMu   sync.Mutex
	mwiAsks map[string]bool // NotifyMailbox passes running: another asked

	deposits, dropped, retrievals, notifies atomic.Int64
	mu                                      sync.Mutex
	firstAudio                              []time.Duration
}

var _ Voicemail = (*voicemail)(nil)

func newVoicemail(s *Server, cfg VoicemailConfig) (*voicemail, error) {
	if cfg.Objects == nil {
		return nil, fmt.Errorf("%w: voicemail without Objects", ErrConfig)
	}
	boxes, err := NewMailboxes(s.cfg.Records, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: voicemail: %w", ErrConfig, err)
	}
	boxes.now = s.cfg.Now
	if cfg.User == "" {
		cfg.User = "voicemail"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.MaxLength, 180*time.Second)
	def(&cfg.Silence, 10*time.Second)
	def(&cfg.MinLength, time.Second)
	def(&cfg.MenuTimeout, 10*time.Second)
	def(&cfg.SubscriptionExpires, time.Hour)
	def(&cfg.RetryEvery, 30*time.Second)
	if cfg.SegmentSize == 0 {
		cfg.SegmentSize = 16 << 10
	}
	if cfg.MediaIP == nil {
		cfg.MediaIP = net.ParseIP(s.advHost)
		if cfg.MediaIP == nil {
			return nil, fmt.Errorf("%w: voicemail: advertised host %q is not an IP: set MediaIP", ErrConfig, s.advHost)
		}
	}
	p, err := loadPrompts()
	if err != nil {
		return nil, err
	}
	v := &voicemail{s: s, cfg: cfg, boxes: boxes, prompts: p}
	if cfg.Spool != "" {
		if v.spool, err = newSpool(v, cfg.Spool, cfg.RetryEvery); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// recordingParams codes a recording.
func (v *voicemail) recordingParams() coding.Params {
	return coding.Params{Scheme: v.cfg.Scheme, SegmentSize: v.cfg.SegmentSize, ContentType: "audio/wav", Workers: 1}
}

// VoicemailStats returns the voicemail service's counts (zero when off).
func (s *Server) VoicemailStats() VoicemailStats {
	v := s.vm
	if v == nil {
		return VoicemailStats{}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	st := VoicemailStats{Deposits: v.deposits.Load(), Dropped: v.dropped.Load(), Retrievals: v.retrievals.Load(),
		Notifies: v.notifies.Load(), FirstAudio: append([]time.Duration(nil), v.firstAudio...)}
	if v.spool != nil {
		st.Spooled, st.SpoolStored = v.spool.waiting.Load(), v.spool.stored.Load()
	}
	return st
}

// Mailboxes returns the mailboxes of the voicemail service, nil when off.
func (s *Server) Mailboxes() *Mailboxes {
	if s.vm == nil {
		return nil
	}
	return s.vm.boxes
}

// call is one answered voicemail call: its dialog and RTP session.
type call struct {
	dlg  *sipgo.DialogServerSession
	conn net.PacketConn
	rtp  *media.Session
}

// answer takes the INVITE with SDP: 488 when no codec is common, else a
// 200 with our answer. ok false: the call was refused (already answered).
func (v *voicemail) answer(req *sip.Request, tx sip.ServerTransaction) (*call, bool) {
	conn, err := net.ListenPacket("udp", net.JoinHostPort(v.cfg.MediaIP.String(), "0"))
	if err != nil {
		v.s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (no RTP port)")
		return nil, false
	}
	remote, codec, sdp, err := media.Answer(req.Body(), conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		conn.Close()
		v.s.log.Info("voicemail: refuse offer", "from", req.From().Address.String(), "err", err)
		v.s.respond(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here (offer PCMU or PCMA at 8 kHz)",
			sip.NewHeader("Warning", `304 voicering "`+err.Error()+`"`))
		return nil, false
	}
	dlg, err := v.dialogs.ReadInvite(req, tx)
	if err != nil {
		conn.Close()
		v.s.respond(req, tx, sip.StatusBadRequest, "Bad Request ("+err.Error()+")")
		return nil, false
	}
	if err := dlg.RespondSDP(sdp); err != nil {
		conn.Close()
		dlg.Close()
		return nil, false
	}
	return &call{dlg: dlg, conn: conn, rtp: media.NewSession(conn, remote.Addr, codec, remote.DTMF)}, true
}

func (c *call) close() {
	c.conn.Close()
	c.dlg.Close()
}

// hangup sends BYE unless the caller already did.
func (v *voicemail) hangup(ctx context.Context, c *call) {
	if c.dlg.Context().Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.dlg.Bye(ctx); err != nil {
		v.s.log.Debug("voicemail: bye", "err", err)
	}
}

// Answer takes a call no contact answered: greeting, beep, recording.
func (v *voicemail) Answer(ctx context.Context, cl Call) {
	c, ok := v.answer(cl.Request, cl.Tx)
	if !ok {
		return
	}
	defer c.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.dlg.Context(), cancel) // the caller's BYE
	defer stop()

	events := make(chan event, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	rctx, stopRTP := context.WithCancel(ctx)
	defer stopRTP()
	rec := &recorder{}
	wg.Go(func() {
		c.rtp.Receive(rctx, 5, media.Sink{
			Audio:  rec.audio,
			Packet: func() { trySend(events, event{packet: true}) },
			Digit:  func(d rune) { trySend(events, event{digit: d}) },
		})
	})

	greeting := v.prompts["greeting"]
	gctx, gcancel := context.WithTimeout(ctx, v.s.cfg.RecordTimeout) // else the default one
	if _, g, err := v.boxes.List(gctx, cl.AOR); err == nil && g != nil {
		if pcm, err := v.fetch(gctx, g.Cap); err == nil {
			greeting = pcm
		}
	}
	gcancel()
	if err := c.rtp.Play(ctx, append(greeting, v.prompts["beep"]...)); err != nil {
		return // the caller hung up during the greeting
	}
	msg := Message{ID: newMessageID(), From: cl.Request.From().Address.String(), At: v.s.cfg.Now(), Folder: FolderNew}
	sp := v.spool.begin(cl.AOR, msg)
	got, reason, err := v.record(ctx, c, rec, events, sp)
	stopRTP()
	if reason != "hangup" {
		v.hangup(ctx, c)
	}
	msg.Cap, msg.Duration = got.Cap, got.Duration
	if d := rec.spooledShort(); d > 0 {
		v.s.log.Warn("voicemail: the spool's disk fell behind; its copy of the recording lacks frames", "aor", cl.AOR, "id", msg.ID, "frames", d)
	}
	if msg.Duration < v.cfg.MinLength {
		v.dropped.Add(1)
		v.s.log.Info("voicemail: recording too short, dropped", "aor", cl.AOR, "duration", msg.Duration)
		sp.done()
		if err == nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			v.cfg.Objects.Remove(rctx, msg.Cap)
			cancel()
		}
		return
	}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), v.s.cfg.RecordTimeout)
	defer wcancel()
	if err == nil {
		sp.stored(msg)
		msg, err = v.boxes.store(wctx, cl.AOR, msg, entryVersion(msg.At))
	}
	if err != nil {
		if sp.leave(msg, err) {
			v.s.log.Warn("voicemail: the ring did not take the deposit; spooled, will retry", "aor", cl.AOR, "id", msg.ID, "duration", msg.Duration, "err", err)
		} else {
			v.s.log.Error("voicemail: deposit lost", "aor", cl.AOR, "duration", msg.Duration, "err", err)
		}
		return
	}
	sp.done()
	v.deposits.Add(1)
	v.s.log.Info("voicemail: deposited", "aor", cl.AOR, "id", msg.ID, "duration", msg.Duration, "ended", reason)
	v.notifyDeposit(wctx, cl.AOR)
}

type event struct {
	packet bool
	digit  rune
}

func trySend[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// recorder takes decoded audio from the RTP goroutine; while on, it
// passes it to out as WAV sample bytes and counts silence.
type recorder struct {
	mu    sync.Mutex
	out   chan []byte
	spool chan []byte // the same bytes for the spool; nil: none
	// spoolDropped counts frames the spool fell too far behind to take.
	spoolDropped int
	samples      int
	quiet        int // consecutive samples below the silence level
	dropped      int
}

// silenceLevel is the RMS under which a 20 ms frame counts as silence.
const silenceLevel = 200

func (r *recorder) audio(pcm []int16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.out == nil {
		return
	}
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	if len(pcm) > 0 && math.Sqrt(sum/float64(len(pcm))) < silenceLevel {
		r.quiet += len(pcm)
	} else {
		r.quiet = 0
	}
	r.samples += len(pcm)
	b := media.PCMBytes(nil, pcm)
	select {
	case r.out <- b:
	default:
		r.dropped++ // the store fell 80 s behind: keep the call going
	}
	if r.spool != nil {
		select {
		case r.spool <- b:
		default: // the disk fell 80 s behind
			r.spoolDropped++
		}
	}
}

func (r *recorder) start(out, spool chan []byte) {
	r.mu.Lock()
	r.out, r.spool, r.samples, r.quiet = out, spool, 0, 0
	r.mu.Unlock()
}

// stop ends recording and returns the samples taken.
func (r *recorder) stop() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.out != nil {
		close(r.out)
		r.out = nil
	}
	if r.spool != nil {
		close(r.spool)
		r.spool = nil
	}
	return r.samples
}

// spooledShort returns how many frames the spool missed.
func (r *recorder) spooledShort() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spoolDropped
}

func (r *recorder) quietFor() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.quiet) * time.Second / media.SampleRate
}

// record streams the caller's audio into Objects.Put until the caller
// hangs up (reason "hangup"), MaxLength ("max length"), Silence
// ("silence"), or a '#' ("key"). The recording is a WAV with unknown
// sizes (media.UnknownSize): the object is being coded while the caller
// speaks, so its length is not known when its first segment is stored.
// The same bytes go to sp, the deposit's spool file (nil: none). The
// Duration is set even when storing failed.
func (v *voicemail) record(ctx context.Context, c *call, rec *recorder, events chan event, sp *spooled) (Message, string, error) {
	out := make(chan []byte, 4096) // 80 s of 20 ms frames
	pr, pw := io.Pipe()
	type result struct {
		cap coding.Cap
		err error
	}
	res := make(chan result, 1)
	go func() { // joined below: res is always read
		cp, _, err := v.cfg.Objects.Put(context.WithoutCancel(ctx), pr, v.recordingParams())
		pr.CloseWithError(err)
		res <- result{cp, err}
	}()
	copied := make(chan error, 1)
	go func() { // joined below
		err := media.WriteHeader(pw, media.UnknownSize)
		for b := range out {
			if err == nil {
				_, err = pw.Write(b)
			}
		}
		copied <- err
	}()
	// The spool takes the audio at the pace it comes, not at the ring's.
	var sout chan []byte
	spooled := make(chan struct{})
	if sp != nil {
		sout = make(chan []byte, 4096)
		go func() { // joined below
			defer close(spooled)
			for b := range sout {
				sp.Write(b)
			}
		}()
	} else {
		close(spooled)
	}
	rec.start(out, sout)
	maxT := time.NewTimer(v.cfg.MaxLength)
	defer maxT.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastPacket := time.Now()
	reason := ""
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "hangup"
		case <-maxT.C:
			reason = "max length"
		case e := <-events:
			if e.packet {
				lastPacket = time.Now()
			}
			if e.digit == '#' {
				reason = "key"
			}
		case <-tick.C:
			if time.Since(lastPacket) >= v.cfg.Silence || rec.quietFor() >= v.cfg.Silence {
				reason = "silence"
			}
		}
	}
	samples := rec.stop()
	<-spooled
	werr := <-copied
	pw.CloseWithError(werr)
	r := <-res
	d := time.Duration(samples) * time.Second / media.SampleRate
	if r.err != nil {
		return Message{Duration: d}, reason, fmt.Errorf("sipvm: store recording: %w", r.err)
	}
	return Message{Cap: r.cap, Duration: d}, reason, nil
}

// fetch reads a whole recording (a greeting) into memory.
func (v *voicemail) fetch(ctx context.Context, c coding.Cap) ([]int16, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { err := v.cfg.Objects.Get(ctx, c, pw); pw.CloseWithError(err); done <- err }()
	pcm, err := media.ReadPCM(pr)
	pr.CloseWithError(errors.New("done"))
	<-done
	return pcm, err
}
