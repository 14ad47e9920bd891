package sipvm

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// isOurs reports whether u names this peer (its advertised address).
func (s *Server) isOurs(u sip.Uri) bool {
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	return strings.EqualFold(u.Host, s.advHost) && port == s.advPort
}

// routedThrough reports whether req's top Route names this peer: a
// request inside a dialog this peer record-routed.
func (s *Server) routedThrough(req *sip.Request) bool {
	r := req.Route()
	return r != nil && s.isOurs(r.Address)
}

// forUs reports whether req's Request-URI is in the served domain (or
// names this peer by address, as test tools do).
func (s *Server) forUs(u sip.Uri) bool {
	return strings.EqualFold(u.Host, s.cfg.Domain) || strings.EqualFold(u.Host, s.advHost)
}

// relay passes a downstream response up to the caller on tx, without the
// Via this peer added.
func relay(orig *sip.Request, tx sip.ServerTransaction, res *sip.Response) error {
	r := res.Clone()
	r.RemoveHeader("Via")
	r.SetTransport(orig.Transport())
	r.SetDestination(orig.Source())
	return tx.Respond(r)
}

// forwarded returns a copy of req to send on towards target (nil: where
// its Route or Request-URI says), with this peer's Route popped and
// Max-Forwards decreased; ok is false when Max-Forwards ran out.
func (s *Server) forwarded(req *sip.Request, target *sip.Uri) (*sip.Request, bool) {
	r := req.Clone()
	if s.routedThrough(r) {
		r.RemoveHeader("Route")
	}
	if target != nil {
		r.Recipient = *target.Clone()
	}
	if mf := r.MaxForwards(); mf != nil {
		if mf.Val() <= 1 {
			return nil, false
		}
		mf.Dec()
	} else {
		m := sip.MaxForwardsHeader(69)
		r.AppendHeader(&m)
	}
	r.SetSource("")
	r.SetDestination("")
	r.SetTransport("")
	return r, true
}

// forwardInDialog proxies a request inside a record-routed dialog (BYE,
// re-INVITE, INFO…) and relays its final answer.
func (s *Server) forwardInDialog(req *sip.Request, tx sip.ServerTransaction) {
	ctx, ok := s.context()
	if !ok {
		s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (shutting down)")
		return
	}
	defer s.calls.Done()
	fwd, ok := s.forwarded(req, nil)
	if !ok {
		s.respond(req, tx, sip.StatusTooManyHops, "Too Many Hops")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 32*time.Second)
	defer cancel()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	tx.OnCancel(func(*sip.Request) { stop() })
	ctc, err := s.client.TransactionRequest(ctx, fwd, sipgo.ClientRequestAddVia, s.fromListener)
	if err != nil {
		s.log.Info("sip: forward in dialog", "req", req.StartLine(), "err", err)
		s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (next hop unreachable)")
		return
	}
	defer ctc.Terminate()
	for {
		select {
		case res := <-ctc.Responses():
			if res.StatusCode == 100 {
				continue
			}
			relay(req, tx, res)
			if !res.IsProvisional() {
				return
			}
		case <-ctc.Done():
			s.respond(req, tx, sip.StatusRequestTimeout, "Request Timeout (next hop did not answer)")
			return
		case <-ctx.Done():
			return
		}
	}
}

// onAck forwards an ACK for a 2xx along its dialog's route; ACKs for
// other answers are absorbed by the transaction layer.
func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if s.forUs(req.Recipient) && !s.routedThrough(req) {
		if s.vm != nil { // an ACK to this peer itself: for voicemail, or nothing
			s.vm.dialogs.ReadAck(req, tx)
		}
		return
	}
	fwd, ok := s.forwarded(req, nil)
	if !ok {
		return
	}
	if err := s.client.WriteRequest(fwd, sipgo.ClientRequestAddVia, s.fromListener); err != nil {
		s.log.Info("sip: forward ACK", "to", fwd.Recipient.String(), "err", err)
	}
}

// onStrayResponse forwards responses that match no client transaction,
// such as retransmitted 2xx answers to a forked INVITE, statelessly
// upstream when their top Via is ours.
func (s *Server) onStrayResponse(res *sip.Response) {
	via := res.Via()
	if via == nil || !strings.EqualFold(via.Host, s.advHost) || via.Port != s.advPort || !res.IsSuccess() {
		return
	}
	r := res.Clone()
	r.RemoveHeader("Via")
	if r.Via() == nil {
		return
	}
	r.SetSource("")
	r.SetDestination("")
	r.SetTransport("")
	if err := s.srv.WriteResponse(r); err != nil {
		s.log.Debug("sip: forward stray response", "err", err)
	}
}

// branch is one forked leg of a call.
type branch struct {
	req      *sip.Request
	tx       sip.ClientTransaction
	ringing  bool // a provisional answer came: CANCEL may be sent
	final    bool
	canceled bool
}

type branchEvent struct {
	i   int
	res *sip.Response // nil: the transaction ended without a final answer
}

func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") { // re-INVITE
		if !s.routedThrough(req) {
			s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
			return
		}
		s.forwardInDialog(req, tx)
		return
	}
	ctx, ok := s.context()
	if !ok {
		s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (shutting down)")
		return
	}
	defer s.calls.Done()
	if !s.forUs(req.Recipient) {
		s.respond(req, tx, sip.StatusForbidden, fmt.Sprintf("Forbidden (this ring serves %s, it does not relay to %s)", s.cfg.Domain, req.Recipient.Host))
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() <= 1 {
		s.respond(req, tx, sip.StatusTooManyHops, "Too Many Hops")
		return
	}
	s.respond(req, tx, 100, "Trying")
	user := req.Recipient.User
	if CheckName("user", user) != nil {
		s.respond(req, tx, sip.StatusNotFound, "Not Found (no such user)")
		return
	}
	if s.vm != nil && user == s.vm.cfg.User {
		s.vm.retrieve(ctx, req, tx)
		return
	}
	aor := AOR(user, s.cfg.Domain)
	bs, err := s.Lookup(ctx, aor)
	if err != nil {
		s.log.Warn("sip: route call", "aor", aor, "err", err)
	}
	if len(bs) == 0 {
		s.cfg.Voicemail.Answer(ctx, Call{AOR: aor, Reason: NotRegistered, Request: req, Tx: tx})
		return
	}
	if reason, answered := s.fork(ctx, req, tx, bs); !answered {
		s.cfg.Voicemail.Answer(ctx, Call{AOR: aor, Reason: reason, Request: req, Tx: tx})
	}
}

// fork sends req to every binding at once and relays the answers. It
// returns answered true once the caller got a final answer (a 2xx, a
// failure that voicemail does not take, or the 487 of its own CANCEL);
// otherwise voicemail is to answer, for reason.
func (s *Server) fork(ctx context.Context, req *sip.Request, tx sip.ServerTransaction, bs []Binding) (reason Reason, answered bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	callerGone := make(chan struct{})
	var goneOnce sync.Once
	tx.OnCancel(func(*sip.Request) { goneOnce.Do(func() { close(callerGone) }) })

	rr := &sip.RecordRouteHeader{Address: sip.Uri{Host: s.advHost, Port: s.advPort,
		UriParams: sip.HeaderParams{{K: "lr", V: ""}}}}
	if t := strings.ToLower(req.Transport()); t != "udp" {
		rr.Address.UriParams.Add("transport", t)
	}
	events := make(chan branchEvent, 4*len(bs))
	var wg sync.WaitGroup
	defer wg.Wait()
	var branches []*branch
	for _, b := range bs {
		var target sip.Uri
		if err := sip.ParseUri(b.Contact, &target); err != nil {
			continue
		}
		fwd, ok := s.forwarded(req, &target)
		if !ok {
			s.respond(req, tx, sip.StatusTooManyHops, "Too Many Hops")
			return 0, true
		}
		fwd.PrependHeader(rr.Clone())
		ctc, err := s.client.TransactionRequest(ctx, fwd, sipgo.ClientRequestAddVia, s.fromListener)
		if err != nil {
			s.log.Info("sip: fork", "contact", b.Contact, "err", err)
			continue
		}
		i := len(branches)
		branches = append(branches, &branch{req: fwd, tx: ctc})
		wg.Go(func() {
			defer ctc.Terminate()
			for {
				select {
				case res := <-ctc.Responses():
					events <- branchEvent{i: i, res: res}
					if !res.IsProvisional() {
						return
					}
				case <-ctc.Done():
					events <- branchEvent{i: i}
					return
				case <-ctx.Done():
					return
				}
			}
		})
	}
	if len(branches) == 0 {
		return NotRegistered, false
	}
	ring := time.NewTimer(s.cfg.RingTimeout)
	defer ring.Stop()
	cancelAll := func() {
		for _, b := range branches {
			if !b.final && !b.canceled {
				b.canceled = true
				s.cancelBranch(ctx, b, &wg)
			}
		}
	}
	pending := len(branches)
	var best *sip.Response
	won, gone, timedOut := false, false, false
	for pending > 0 {
		select {
		case ev := <-events:
			b := branches[ev.i]
			switch {
			case ev.res == nil:
				if !b.final {
					b.final = true
					pending--
				}
			case ev.res.IsProvisional():
				b.ringing = true
				if ev.res.StatusCode > 100 && !won && !gone && !timedOut {
					relay(req, tx, ev.res)
				}
			case ev.res.IsSuccess():
				if !b.final {
					b.final = true
					pending--
				}
				relay(req, tx, ev.res) // every 2xx goes up (RFC 3261 16.7)
				if !won {
					won = true
					cancelAll()
				}
			default:
				if !b.final {
					b.final = true
					pending--
				}
				if best == nil || better(ev.res.StatusCode, best.StatusCode) {
					best = ev.res
				}
			}
		case <-callerGone:
			gone, callerGone = true, nil
			cancelAll() // the transaction layer answered the caller 487
		case <-ring.C:
			timedOut = true
			cancelAll()
		case <-ctx.Done():
			return 0, true
		}
	}
	switch {
	case won || gone:
		return 0, true
	case timedOut:
		return NoAnswer, false
	case best == nil:
		return NoAnswer, false
	}
	switch best.StatusCode {
	case sip.StatusBusyHere, 600:
		return Busy, false
	case sip.StatusTemporarilyUnavailable, sip.StatusRequestTimeout, sip.StatusRequestTerminated, sip.StatusNotFound:
		return NoAnswer, false
	}
	relay(req, tx, best)
	return 0, true
}

// better reports whether final status a beats b as the answer to relay
// (RFC 3261 16.7: 6xx first, then the lowest class).
func better(a, b int) bool {
	switch {
	case a >= 600 && b < 600:
		return true
	case b >= 600:
		return false
	}
	return a/100 < b/100 || a/100 == b/100 && a == sip.StatusBusyHere
}

// cancelBranch sends CANCEL for a pending branch; its INVITE then ends
// with 487 (read by the branch's goroutine).
func (s *Server) cancelBranch(ctx context.Context, b *branch, wg *sync.WaitGroup) {
	c := sip.NewRequest(sip.CANCEL, *b.req.Recipient.Clone())
	c.AppendHeader(b.req.Via().Clone()) // the INVITE's, with this peer's branch
	for _, name := range []string{"Route", "From", "To", "Call-ID"} {
		for _, h := range b.req.GetHeaders(name) {
			c.AppendHeader(sip.HeaderClone(h))
		}
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(&sip.CSeqHeader{SeqNo: b.req.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	wg.Go(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := s.client.Do(cctx, c, sipgo.ClientRequestBuild, s.fromListener); err != nil {
			s.log.Debug("sip: cancel branch", "to", b.req.Recipient.String(), "err", err)
		}
	})
}
