package sipvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// SubscriptionsKey is the key of the record holding the MWI
// subscriptions of aor: one entry per subscription dialog (its Call-ID),
// expiring with it, so that whichever peer changes the mailbox can notify
// every subscriber.
func SubscriptionsKey(aor string) store.Key { return store.Key(dht.Key("mwi:" + aor)) }

// subscription is the dialog state a peer needs to send a NOTIFY.
type subscription struct {
	Contact   string    `json:"contact"`             // the subscriber's Contact: the NOTIFY's target
	Source    string    `json:"source,omitempty"`    // where the SUBSCRIBE came from
	Transport string    `json:"transport,omitempty"` // over what
	CallID    string    `json:"callid"`
	From      string    `json:"from"` // the subscriber's From URI and tag
	FromTag   string    `json:"fromtag"`
	To        string    `json:"to"` // our side: the To URI and the tag we gave
	ToTag     string    `json:"totag"`
	Expires   time.Time `json:"-"`
}

// summary is the RFC 3842 message-summary body for newN new and old
// saved messages of aor.
func summary(aor string, newN, old int) []byte {
	waiting := "no"
	if newN > 0 {
		waiting = "yes"
	}
	return fmt.Appendf(nil, "Messages-Waiting: %s\r\nMessage-Account: %s\r\nVoice-Message: %d/%d\r\n", waiting, aor, newN, old)
}

func (s *Server) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	if s.routedThrough(req) {
		s.forwardInDialog(req, tx)
		return
	}
	if s.vm == nil {
		s.respond(req, tx, sip.StatusMethodNotAllowed, "Method Not Allowed (no voicemail on this ring)", sip.NewHeader("Allow", allowed))
		return
	}
	ev := req.GetHeader("Event")
	if ev == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ev.Value(), ";", 2)[0]), "message-summary") {
		s.respond(req, tx, 489, "Bad Event", sip.NewHeader("Allow-Events", "message-summary"))
		return
	}
	ctx, ok := s.context()
	if !ok {
		s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (shutting down)")
		return
	}
	defer s.calls.Done()
	s.vm.subscribe(ctx, req, tx)
}

func (v *voicemail) subscribe(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) {
	from, to, contact := req.From(), req.To(), req.Contact()
	if from == nil || to == nil || req.CallID() == nil || contact == nil {
		v.s.respond(req, tx, sip.StatusBadRequest, "Bad Request (missing From, To, Call-ID or Contact)")
		return
	}
	user, ok := v.s.authenticate(ctx, req, tx)
	if !ok {
		return
	}
	if target := req.Recipient.User; target != user && target != v.cfg.User {
		v.s.respond(req, tx, sip.StatusForbidden, "Forbidden (subscribe to your own mailbox)")
		return
	}
	aor := AOR(user, v.s.cfg.Domain)
	expires := v.cfg.SubscriptionExpires
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			expires = min(expires, time.Duration(n)*time.Second)
		}
	}
	toTag, _ := to.Params.Get("tag")
	if toTag == "" {
		toTag = sip.GenerateTagN(10)
	}
	fromTag, _ := from.Params.Get("tag")
	sub := subscription{
		Contact: contact.Address.String(), Source: req.Source(), Transport: req.Transport(),
		CallID: req.CallID().Value(), From: from.Address.String(), FromTag: fromTag,
		To: to.Address.String(), ToTag: toTag, Expires: v.s.cfg.Now().Add(expires),
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if t := res.To(); t != nil && !t.Params.Has("tag") {
		t.Params.Add("tag", toTag)
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: v.s.advHost, Port: v.s.advPort}})
	wctx, cancel := context.WithTimeout(ctx, v.s.cfg.RecordTimeout)
	defer cancel()
	var err error
	if expires > 0 {
		var b []byte
		b, _ = json.Marshal(sub)
		err = v.s.cfg.Records.Put(wctx, SubscriptionsKey(aor), store.Entry{Name: sub.CallID, Value: b,
			Version: uint64(v.s.cfg.Now().UnixNano()), Expires: sub.Expires})
	} else {
		err = v.s.cfg.Records.Delete(wctx, SubscriptionsKey(aor), sub.CallID)
	}
	if err != nil {
		v.s.log.Warn("voicemail: store subscription", "aor", aor, "err", err)
		v.s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (the ring did not answer; retry)", sip.NewHeader("Retry-After", "5"))
		return
	}
	if err := tx.Respond(res); err != nil {
		return
	}
	msgs, _, _ := v.boxes.List(wctx, aor)
	n, m := Counts(msgs)
	v.notify(wctx, aor, sub, n, m)
}

// notifyAll sends the current message summary of aor to every live
// subscription on the ring.
func (v *voicemail) notifyAll(ctx context.Context, aor string) error {
	msgs, _, err := v.boxes.List(ctx, aor)
	if err != nil {
		return err
	}
	n, m := Counts(msgs)
	es, err := v.s.cfg.Records.Get(ctx, SubscriptionsKey(aor))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("sipvm: read the MWI subscriptions of %s: %w", aor, err)
	}
	now := v.s.cfg.Now()
	for _, e := range es {
		var sub subscription
		if json.Unmarshal(e.Value, &sub) != nil || !e.Expires.After(now) {
			continue
		}
		sub.Expires = e.Expires
		if err := v.notify(ctx, aor, sub, n, m); errors.Is(err, errGone) {
			v.s.cfg.Records.Delete(ctx, SubscriptionsKey(aor), e.Name)
		}
	}
	return nil
}

// mwiSettle is how long after a deposit its peer NOTIFYs the mailbox's
// subscribers a second time.
const mwiSettle = 3 * time.Second

// notifyDeposit NOTIFYs aor's subscribers after a deposit, and once more
// mwiSettle later. Deposits stored at once by two peers (two callers,
// or spools emptied after an outage) each read the mailbox right after
// their own write, and each may miss the other's while the ring's
// replicas settle: both lamps would then say one message where there
// are two. The second pass reads the mailbox settled. It is folded with
// other passes over the mailbox (NotifyMailbox), and dropped when the
// peer stops.
func (v *voicemail) notifyDeposit(ctx context.Context, aor string) {
	v.notifyAll(ctx, aor)
	sctx, ok := v.s.context()
	if !ok {
		return
	}
	go func() { // owned by the Server: s.calls, joined by Serve
		defer v.s.calls.Done()
		t := time.NewTimer(mwiSettle)
		defer t.Stop()
		select {
		case <-t.C:
		case <-sctx.Done():
			return
		}
		if err := v.s.NotifyMailbox(aor); err != nil && !errors.Is(err, ErrNotServing) {
			v.s.log.Info("voicemail: notify the mailbox's subscribers again", "aor", aor, "err", err)
		}
	}()
}

// MethodNotifyMailbox is the ring call a SIP peer with voicemail answers
// (sipvm/ringpeer registers it): its body is an address of record of the
// peer's domain, and the peer NOTIFYs that mailbox's live MWI
// subscriptions with its counts, in the background; the answer is empty.
// `voicering vm rm` calls it, so that a mailbox changed outside SIP still
// turns the phones' lamps off. The NOTIFYs go only to the owner's
// subscriptions and say only what the owner may know; the caller learns
// nothing. Calls for a mailbox being notified fold into one more pass
// after the current one, and at most maxMWIAsks mailboxes are notified at
// once, so the call cannot be made to multiply NOTIFYs.
const MethodNotifyMailbox = "sip.mwi"

// maxMWIAsks bounds the mailboxes one peer notifies at once for
// MethodNotifyMailbox.
const maxMWIAsks = 64

// NotifyMailbox has this peer NOTIFY the live MWI subscriptions of aor
// with its mailbox's counts. The NOTIFYs are sent in the background, by a
// goroutine that Serve waits for; a call for a mailbox being notified
// asks for one more pass after the current one. Errors: ErrConfig
// without a voicemail service; dht.ErrBadRequest for an address not of
// the form sip:USER@DOMAIN of this peer's domain; ErrBusy when maxMWIAsks
// mailboxes are being notified; ErrNotServing before or after Serve.
func (s *Server) NotifyMailbox(aor string) error {
	v := s.vm
	if v == nil {
		return fmt.Errorf("%w: this peer has no voicemail service", ErrConfig)
	}
	user, domain, ok := strings.Cut(strings.TrimPrefix(aor, "sip:"), "@")
	if !ok || !strings.HasPrefix(aor, "sip:") || CheckName("user", user) != nil || !strings.EqualFold(domain, s.cfg.Domain) {
		return fmt.Errorf("%w: %q is not an address sip:USER@%s", dht.ErrBadRequest, aor, s.cfg.Domain)
	}
	aor = AOR(user, s.cfg.Domain)
	v.mwiMu.Lock()
	defer v.mwiMu.Unlock()
	if _, running := v.mwiAsks[aor]; running {
		v.mwiAsks[aor] = true // once more when this pass ends
		return nil
	}
	if len(v.mwiAsks) >= maxMWIAsks {
		return fmt.Errorf("%w: %d mailboxes are being notified; try again shortly", ErrBusy, len(v.mwiAsks))
	}
	ctx, ok := s.context()
	if !ok {
		return ErrNotServing
	}
	if v.mwiAsks == nil {
		v.mwiAsks = map[string]bool{}
	}
	v.mwiAsks[aor] = false
	go func() { // owned by the Server: s.calls, joined by Serve
		defer s.calls.Done()
		for {
			nctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout+10*time.Second)
			if err := v.notifyAll(nctx, aor); err != nil {
				s.log.Info("voicemail: notify the mailbox's subscribers", "aor", aor, "err", err)
			}
			cancel()
			v.mwiMu.Lock()
			again := v.mwiAsks[aor]
			if again {
				v.mwiAsks[aor] = false
			} else {
				delete(v.mwiAsks, aor)
			}
			v.mwiMu.Unlock()
			if !again {
				return
			}
		}
	}()
	return nil
}

var errGone = errors.New("subscription gone")

// notify sends one NOTIFY in sub's dialog. Its CSeq is the clock in
// centiseconds, so NOTIFYs from different peers still increase.
func (v *voicemail) notify(ctx context.Context, aor string, sub subscription, newN, old int) error {
	var target, fromURI, toURI sip.Uri
	if sip.ParseUri(sub.Contact, &target) != nil || sip.ParseUri(sub.To, &fromURI) != nil || sip.ParseUri(sub.From, &toURI) != nil {
		return errGone
	}
	req := sip.NewRequest(sip.NOTIFY, target)
	from := &sip.FromHeader{Address: fromURI, Params: sip.NewParams()}
	from.Params.Add("tag", sub.ToTag)
	to := &sip.ToHeader{Address: toURI, Params: sip.NewParams()}
	if sub.FromTag != "" {
		to.Params.Add("tag", sub.FromTag)
	}
	callID := sip.CallIDHeader(sub.CallID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: uint32(v.s.cfg.Now().UnixMilli() / 10 % (1 << 31)), MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: v.s.advHost, Port: v.s.advPort}})
	req.AppendHeader(sip.NewHeader("Event", "message-summary"))
	state := "active;expires=" + strconv.Itoa(max(0, int(time.Until(sub.Expires)/time.Second)))
	if !sub.Expires.After(v.s.cfg.Now()) {
		state = "terminated;reason=timeout"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/simple-message-summary"))
	req.SetBody(summary(aor, newN, old))
	if sub.Source != "" && strings.EqualFold(sub.Transport, "udp") {
		req.SetDestination(sub.Source)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := v.s.client.Do(ctx, req, sipgo.ClientRequestBuild, v.s.fromListener)
	v.notifies.Add(1)
	switch {
	case err != nil:
		v.s.log.Info("voicemail: notify", "aor", aor, "to", sub.Contact, "err", err)
		return err
	case res.StatusCode == sip.StatusCallTransactionDoesNotExists || res.StatusCode == 489:
		return errGone
	}
	return nil
}
