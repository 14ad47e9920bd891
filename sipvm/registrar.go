package sipvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/voicering/voicering/store"
)

// Binding is one registered contact of an address of record.
type Binding struct {
	// Name identifies the binding in the AOR's record: "instance:" and
	// the +sip.instance of the UA, or "uri:" and the contact URI.
	Name string `json:"-"`
	// Contact is the contact URI calls are sent to.
	Contact string `json:"contact"`
	// Params are the Contact header's parameters (without expires).
	Params string `json:"params,omitempty"`
	// Source is where the REGISTER came from (HOST:PORT) and Transport
	// over what.
	Source    string `json:"source,omitempty"`
	Transport string `json:"transport,omitempty"`
	// CallID and CSeq are the REGISTER's, to order refreshes.
	CallID string `json:"callid,omitempty"`
	CSeq   uint32 `json:"cseq,omitempty"`
	// Expires is when the binding lapses.
	Expires time.Time `json:"-"`
}

func decodeBinding(e store.Entry) (Binding, bool) {
	var b Binding
	if err := json.Unmarshal(e.Value, &b); err != nil || b.Contact == "" {
		return Binding{}, false
	}
	b.Name, b.Expires = e.Name, e.Expires
	return b, true
}

// cache keeps bindings and credentials read from the ring for a short
// while. A write through this peer replaces its entry at once.
type cache struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	binds map[string]cached[[]Binding]
	creds map[string]cached[Credentials]
}

type cached[T any] struct {
	v  T
	at time.Time
}

func newCache(ttl time.Duration, now func() time.Time) *cache {
	return &cache{ttl: ttl, now: now, binds: map[string]cached[[]Binding]{}, creds: map[string]cached[Credentials]{}}
}

func cacheGet[T any](c *cache, m map[string]cached[T], k string) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := m[k]
	if !ok || c.now().Sub(e.at) > c.ttl {
		var zero T
		return zero, false
	}
	return e.v, true
}

func cachePut[T any](c *cache, m map[string]cached[T], k string, v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(m) > 100_000 { // drop what expired rather than grow for ever
		for k, e := range m {
			if now.Sub(e.at) > c.ttl {
				delete(m, k)
			}
		}
	}
	m[k] = cached[T]{v: v, at: now}
}

// Lookup returns the live bindings of aor, read from the ring (or this
// peer's cache, when it holds some read within CacheTTL: an empty answer
// is never taken from the cache, so a new registration is seen at once).
func (s *Server) Lookup(ctx context.Context, aor string) ([]Binding, error) {
	if bs, ok := cacheGet(s.cache, s.cache.binds, aor); ok && len(bs) > 0 {
		return live(bs, s.cfg.Now()), nil
	}
	return s.readBindings(ctx, aor)
}

func (s *Server) readBindings(ctx context.Context, aor string) ([]Binding, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	es, err := s.cfg.Records.Get(ctx, BindingsKey(aor))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("sipvm: read the bindings of %s: %w", aor, err)
	}
	var bs []Binding
	for _, e := range es {
		if b, ok := decodeBinding(e); ok {
			bs = append(bs, b)
		}
	}
	cachePut(s.cache, s.cache.binds, aor, bs)
	return bs, nil
}

func live(bs []Binding, now time.Time) []Binding {
	return slices.DeleteFunc(slices.Clone(bs), func(b Binding) bool { return !b.Expires.After(now) })
}

func (s *Server) credentials(ctx context.Context, user string) (Credentials, error) {
	if c, ok := cacheGet(s.cache, s.cache.creds, user); ok {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	c, err := s.accounts.Credentials(ctx, user, s.cfg.Domain)
	if err != nil {
		return c, err
	}
	cachePut(s.cache, s.cache.creds, user, c)
	return c, nil
}

// authenticate checks req's digest credentials for the domain. It answers
// the request itself (401 or 403) and returns ok false when they fail.
func (s *Server) authenticate(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (user string, ok bool) {
	var value string
	if h := req.GetHeader("Authorization"); h != nil {
		value = h.Value()
	}
	c, err := s.nonces.parseAuthorization(value, s.cfg.Domain)
	if err == nil {
		var cr Credentials
		cr, err = s.credentials(ctx, c.Username)
		switch {
		case errors.Is(err, ErrNoAccount):
			err = fmt.Errorf("%w: %w", errBadDigest, err)
		case err != nil:
			s.log.Warn("sip: read credentials", "user", c.Username, "err", err)
			s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (the ring did not answer; retry)", sip.NewHeader("Retry-After", "5"))
			return "", false
		default:
			err = s.nonces.verify(c, string(req.Method), cr)
		}
	}
	switch {
	case err == nil:
		return c.Username, true
	case errors.Is(err, errBadDigest):
		s.log.Info("sip: digest refused", "user", userOf(c), "from", req.Source(), "err", err)
		s.respond(req, tx, sip.StatusForbidden, "Forbidden (wrong user name or password)")
		return "", false
	}
	s.answer(req, tx, sip.StatusUnauthorized, "Unauthorized", s.nonces.challenges(s.cfg.Domain, errors.Is(err, errStale))...)
	return "", false
}

func userOf(c *digest.Credentials) string {
	if c == nil {
		return ""
	}
	return c.Username
}

func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	ctx, ok := s.context()
	if !ok {
		s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (shutting down)")
		return
	}
	defer s.calls.Done()
	to := req.To()
	if to == nil || req.CallID() == nil || req.CSeq() == nil {
		s.respond(req, tx, sip.StatusBadRequest, "Bad Request (missing To, Call-ID or CSeq)")
		return
	}
	if !strings.EqualFold(to.Address.Host, s.cfg.Domain) {
		s.respond(req, tx, sip.StatusForbidden, fmt.Sprintf("Forbidden (this ring serves %s, not %s)", s.cfg.Domain, to.Address.Host))
		return
	}
	if s.regSlots != nil && req.GetHeader("Authorization") != nil {
		if !s.admit(req, tx) {
			return
		}
		defer func() { <-s.regSlots }()
	} else if s.regSlots != nil && len(s.regSlots) == cap(s.regSlots) {
		// Every slot is taken: a challenge now would start a
		// registration whose second leg finds none. Refusing it here
		// leaves the CPU to the registrations under way.
		s.refuseStorm(req, tx)
		return
	}
	user, ok := s.authenticate(ctx, req, tx)
	if !ok {
		return
	}
	if to.Address.User != user {
		s.respond(req, tx, sip.StatusForbidden, fmt.Sprintf("Forbidden (%s may not register %s)", user, to.Address.User))
		return
	}
	aor := AOR(user, s.cfg.Domain)
	now := s.cfg.Now()

	defExp := s.cfg.DefaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if err != nil {
			s.respond(req, tx, sip.StatusBadRequest, "Bad Request (Expires is not a number of seconds)")
			return
		}
		defExp = time.Duration(n) * time.Second
	}
	var contacts []*sip.ContactHeader
	for _, h := range req.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			contacts = append(contacts, c)
		}
	}
	existing, err := s.Lookup(ctx, aor)
	if err != nil {
		s.log.Warn("sip: register", "aor", aor, "err", err)
		s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (the ring did not answer; retry)", sip.NewHeader("Retry-After", "5"))
		return
	}
	if len(contacts) == 0 { // a query
		s.okBindings(req, tx, existing, now)
		return
	}
	var puts []store.Entry
	var set []Binding // the bindings puts writes
	var dels []string
	callID, cseq := string(*req.CallID()), req.CSeq().SeqNo
	for _, c := range contacts {
		if c.Address.Wildcard {
			if len(contacts) != 1 || defExp != 0 {
				s.respond(req, tx, sip.StatusBadRequest, "Bad Request (Contact: * needs Expires: 0 and no other contact)")
				return
			}
			for _, b := range existing {
				dels = append(dels, b.Name)
			}
			break
		}
		exp := defExp
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				s.respond(req, tx, sip.StatusBadRequest, "Bad Request (a Contact's expires is not a number of seconds)")
				return
			}
			exp = time.Duration(n) * time.Second
		}
		b := Binding{Contact: c.Address.String(), Source: req.Source(), Transport: req.Transport(), CallID: callID, CSeq: cseq}
		b.Name = "uri:" + b.Contact
		if inst, ok := c.Params.Get("+sip.instance"); ok && inst != "" {
			b.Name = "instance:" + strings.Trim(inst, `"<>`)
		}
		for _, old := range existing {
			if old.Name == b.Name && old.CallID == callID && old.CSeq >= cseq {
				s.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error (out-of-order REGISTER: CSeq not above the last)")
				return
			}
		}
		if exp == 0 {
			dels = append(dels, b.Name)
			continue
		}
		if exp < s.cfg.MinExpires {
			s.respond(req, tx, sip.StatusIntervalToBrief, "Interval Too Brief",
				sip.NewHeader("Min-Expires", strconv.Itoa(int(s.cfg.MinExpires/time.Second))))
			return
		}
		exp = min(exp, s.cfg.MaxExpires)
		p := c.Params.Clone()
		p.Remove("expires")
		b.Params = p.String()
		b.Expires = now.Add(exp)
		v, _ := json.Marshal(b)
		puts = append(puts, store.Entry{Name: b.Name, Value: v, Expires: b.Expires})
		set = append(set, b)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	if len(puts) > 0 {
		err = s.cfg.Records.Put(wctx, BindingsKey(aor), puts...)
	}
	if err == nil && len(dels) > 0 {
		err = s.cfg.Records.Delete(wctx, BindingsKey(aor), dels...)
	}
	if err != nil {
		s.log.Warn("sip: register", "aor", aor, "err", err)
		s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (the ring did not store the binding; retry)", sip.NewHeader("Retry-After", "5"))
		return
	}
	// The bindings now: the ones read, changed as written.
	changed := map[string]bool{}
	for _, n := range dels {
		changed[n] = true
	}
	var now_ []Binding
	for _, b := range set {
		changed[b.Name] = true
		now_ = append(now_, b)
	}
	for _, b := range existing {
		if !changed[b.Name] {
			now_ = append(now_, b)
		}
	}
	slices.SortFunc(now_, func(a, b Binding) int { return strings.Compare(a.Name, b.Name) })
	cachePut(s.cache, s.cache.binds, aor, now_)
	s.log.Debug("sip: registered", "aor", aor, "set", len(puts), "removed", len(dels))
	s.okBindings(req, tx, now_, now)
}

// admit takes a registration slot, or answers 503 and returns false when
// MaxRegistrations are in progress. A REGISTER without credentials needs
// no slot (its 401 costs no ring I/O), but is refused while all are
// taken. The caller gives the slot back.
func (s *Server) admit(req *sip.Request, tx sip.ServerTransaction) bool {
	select {
	case s.regSlots <- struct{}{}:
		return true
	default:
	}
	s.refuseStorm(req, tx)
	return false
}

// refuseStorm answers a REGISTER 503 because MaxRegistrations are in
// progress, and counts it.
func (s *Server) refuseStorm(req *sip.Request, tx sip.ServerTransaction) {
	n := s.shed.Add(1)
	s.logShed(n)
	// Spread the retries: phones told the same delay come back together.
	s.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable (too many registrations in progress; retry later)",
		sip.NewHeader("Retry-After", strconv.Itoa(1+rand.IntN(10))))
}

// logShed says, at most every 10 s, how many REGISTERs were refused since
// it last did: an operator sees a storm without a line per request.
func (s *Server) logShed(total uint64) {
	now := s.cfg.Now().UnixNano()
	last := s.shedLogged.Load()
	if now-last < int64(10*time.Second) || !s.shedLogged.CompareAndSwap(last, now) {
		return
	}
	since := total - s.shedAtLog.Swap(total)
	s.log.Warn("sip: registration storm: REGISTERs answered 503 (raise --max-registrations, or add SIP peers)",
		"refused", since, "limit", s.cfg.MaxRegistrations)
}

// Shed returns how many REGISTERs this server refused with 503 because
// MaxRegistrations were in progress.
func (s *Server) Shed() uint64 { return s.shed.Load() }

// okBindings answers 200 OK listing bs with their remaining lifetimes.
func (s *Server) okBindings(req *sip.Request, tx sip.ServerTransaction, bs []Binding, now time.Time) {
	var lines []string
	for _, b := range live(bs, now) {
		left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		v := "Contact: <" + b.Contact + ">"
		if b.Params != "" {
			v += ";" + b.Params
		}
		lines = append(lines, v+";expires="+strconv.Itoa(max(left, 1)))
	}
	lines = append(lines, "Date: "+now.UTC().Format(http.TimeFormat))
	s.answer(req, tx, sip.StatusOK, "OK", lines...)
}
