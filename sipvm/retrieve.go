package sipvm

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/sipvm/media"
)

// errKey ends a playback interrupted by a key.
var errKey = errors.New("key pressed")

// retrieve serves an owner calling the voicemail URI: digest
// authentication, then "you have N new and M saved messages", each
// message newest first and the menu (1 replay, 7 delete, 9 save, # next,
// 0 record a new greeting), and after the last (or none) a last chance to
// record a greeting.
func (v *voicemail) retrieve(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) {
	user, ok := v.s.authenticate(ctx, req, tx)
	if !ok {
		return
	}
	aor := AOR(user, v.s.cfg.Domain)
	c, ok := v.answer(req, tx)
	if !ok {
		return
	}
	v.retrievals.Add(1)
	defer c.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.dlg.Context(), cancel)
	defer stop()
	events := make(chan event, 16) // a key flood beyond this is dropped
	rec := &recorder{}
	var wg sync.WaitGroup
	rctx, stopRTP := context.WithCancel(ctx)
	wg.Go(func() {
		c.rtp.Receive(rctx, 5, media.Sink{
			Audio:  rec.audio,
			Digit:  func(d rune) { trySend(events, event{digit: d}) },
			Packet: func() { trySend(events, event{packet: true}) },
		})
	})
	defer wg.Wait()
	defer stopRTP()
	defer v.hangup(ctx, c)

	lctx, lcancel := context.WithTimeout(ctx, v.s.cfg.RecordTimeout)
	msgs, _, err := v.boxes.List(lctx, aor)
	lcancel()
	if err != nil {
		v.s.log.Warn("voicemail: list", "aor", aor, "err", err)
	}
	n, m := Counts(msgs)
	if _, err := v.play(ctx, c, events, v.prompts.say("youhave", number(n), "new", "and", number(m), "saved", "messages")); err != nil && !errors.Is(err, errKey) {
		return
	}
	for i := 0; i < len(msgs) && ctx.Err() == nil; {
		msg := msgs[i]
		key, err := v.playMessage(ctx, c, events, msg)
		if err != nil && !errors.Is(err, errKey) {
			v.s.log.Info("voicemail: play message", "aor", aor, "id", msg.ID, "err", err)
		}
		for key == 0 && ctx.Err() == nil {
			if key, err = v.play(ctx, c, events, v.prompts["menu"]); key == 0 && err == nil {
				key = v.waitKey(ctx, events)
				if key == 0 {
					key = '#'
				}
			}
		}
		wctx, wcancel := context.WithTimeout(ctx, v.s.cfg.RecordTimeout)
		switch key {
		case '1':
		case '7':
			if err := v.boxes.Delete(wctx, aor, msg.ID); err == nil {
				v.cfg.Objects.Remove(wctx, msg.Cap)
				v.notifyAll(wctx, aor)
				v.play(ctx, c, events, v.prompts["deleted"])
				i++
			}
		case '9':
			msg.Folder = FolderSaved
			if _, err := v.boxes.Store(wctx, aor, msg); err == nil {
				v.notifyAll(wctx, aor)
				v.play(ctx, c, events, v.prompts["savedmsg"])
				i++
			}
		case '0':
			v.play(ctx, c, events, v.prompts.say("recordgreeting", "beep"))
			v.recordGreeting(ctx, c, rec, events, aor)
		default: // '#', or any other key: next
			i++
		}
		wcancel()
	}
	// The greeting can be recorded from here too, so an owner with an
	// empty mailbox can record one.
	key, err := v.play(ctx, c, events, v.prompts.say("nomore", "endmenu"))
	if key == 0 && err == nil {
		key = v.waitKey(ctx, events)
	}
	if key == '0' {
		v.play(ctx, c, events, v.prompts.say("recordgreeting", "beep"))
		v.recordGreeting(ctx, c, rec, events, aor)
	}
	v.play(ctx, c, events, v.prompts["goodbye"])
}

// recordGreeting records aor's new greeting, and removes the recording it
// replaces (or the new one, when too short to keep, or cut off by the
// owner hanging up before '#' or the silence that ends it).
func (v *voicemail) recordGreeting(ctx context.Context, c *call, rec *recorder, events chan event, aor string) {
	g, reason, err := v.record(ctx, c, rec, events, nil)
	if err != nil {
		v.s.log.Warn("voicemail: record greeting", "aor", aor, "err", err)
		return
	}
	// The recording took as long as the owner spoke: the ring writes get
	// their own time, and finish even if the owner hangs up now.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.s.cfg.RecordTimeout)
	defer cancel()
	if g.Duration < v.cfg.MinLength || reason == "hangup" {
		// Too short, or cut off: the owner did not finish it.
		v.s.log.Info("voicemail: greeting not kept", "aor", aor, "duration", g.Duration, "ended", reason)
		v.cfg.Objects.Remove(wctx, g.Cap)
		return
	}
	_, old, err := v.boxes.List(wctx, aor)
	if err != nil {
		v.s.log.Warn("voicemail: store greeting", "aor", aor, "err", err)
		v.cfg.Objects.Remove(wctx, g.Cap)
		return
	}
	if err := v.boxes.SetGreeting(wctx, aor, g.Cap, g.Duration); err != nil {
		// It may have reached some replicas: keep the recording it names
		// (and the old one, which the entry may still name elsewhere).
		v.s.log.Warn("voicemail: store greeting", "aor", aor, "err", err)
		return
	}
	v.s.log.Info("voicemail: greeting recorded", "aor", aor, "duration", g.Duration, "ended", reason, "replaced", old != nil)
	if old != nil {
		v.cfg.Objects.Remove(wctx, old.Cap)
	}
}

// play plays pcm; a key pressed meanwhile stops it and is returned.
func (v *voicemail) play(ctx context.Context, c *call, events chan event, pcm []int16) (rune, error) {
	return v.playFrom(ctx, c, events, func(ctx context.Context) error { return c.rtp.Play(ctx, pcm) })
}

func (v *voicemail) playFrom(ctx context.Context, c *call, events chan event, f func(context.Context) error) (rune, error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var key rune
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case e := <-events:
				if e.digit != 0 {
					key = e.digit
					cancel()
					return
				}
			case <-pctx.Done():
				return
			}
		}
	})
	err := f(pctx)
	cancel()
	wg.Wait()
	if key != 0 {
		return key, errKey
	}
	return 0, err
}

// waitKey waits MenuTimeout for a key; 0 when none came.
func (v *voicemail) waitKey(ctx context.Context, events chan event) rune {
	t := time.NewTimer(v.cfg.MenuTimeout)
	defer t.Stop()
	for {
		select {
		case e := <-events:
			if e.digit != 0 {
				return e.digit
			}
		case <-t.C:
			return 0
		case <-ctx.Done():
			return 0
		}
	}
}

// firstRead reports the time of the first read that returns data.
type firstRead struct {
	r    io.Reader
	once sync.Once
	at   func()
}

func (f *firstRead) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(f.at)
	}
	return n, err
}

// playMessage streams a message from the ring: playback starts as soon as
// its first segment is decoded, while the rest is still being fetched.
func (v *voicemail) playMessage(ctx context.Context, c *call, events chan event, msg Message) (rune, error) {
	return v.playFrom(ctx, c, events, func(ctx context.Context) error {
		start := time.Now()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		pr, pw := io.Pipe()
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		defer pr.Close()
		wg.Go(func() { pw.CloseWithError(v.cfg.Objects.Get(ctx, msg.Cap, pw)) })
		if _, err := media.ReadHeader(pr); err != nil {
			return err
		}
		return c.rtp.PlayFrom(ctx, &firstRead{r: pr, at: func() {
			d := time.Since(start)
			v.mu.Lock()
			v.firstAudio = append(v.firstAudio, d)
			if len(v.firstAudio) > 1000 {
				v.firstAudio = v.firstAudio[1:]
			}
			v.mu.Unlock()
		}})
	})
}
