package sipvm

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// checked wraps a request handler with the checks RFC 3261 asks of every
// element before it acts on a request (and RFC 4475 tests): a request that
// fails one gets its error response here and never reaches h.
//
//   - a SIP version other than 2.0: 505 Version Not Supported;
//   - a Request-URI scheme other than sip, sips or tel: 416 Unsupported URI
//     Scheme;
//   - a CSeq method that is not the request's (for a method this peer
//     serves; others get 405 anyway), or more than one Content-Length:
//     400 Bad Request;
//   - an extension in Proxy-Require (or, where this peer is the UAS —
//     REGISTER, SUBSCRIBE, OPTIONS not routed through it — in Require):
//     420 Bad Extension with an Unsupported header listing them. ACK and
//     CANCEL are never rejected for extensions.
func (s *Server) checked(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if code, reason, hdrs := s.refuse(req); code != 0 {
			if req.Method != sip.ACK {
				s.respond(req, tx, code, reason, hdrs...)
			}
			return
		}
		h(req, tx)
	}
}

// refuse returns the error response a request deserves before any handler
// sees it, or 0.
func (s *Server) refuse(req *sip.Request) (int, string, []sip.Header) {
	if req.SipVersion != "SIP/2.0" {
		return 505, "Version Not Supported", nil
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel", "":
	default:
		return 416, "Unsupported URI Scheme", nil
	}
	if c := req.CSeq(); c != nil && c.MethodName != req.Method && served(req.Method) {
		return 400, "CSeq Method Does Not Match the Request", nil
	}
	if len(req.GetHeaders("Content-Length")) > 1 {
		return 400, "More Than One Content-Length", nil
	}
	if req.Method == sip.ACK || req.Method == sip.CANCEL {
		return 0, "", nil
	}
	var unsupported []string
	tags := func(name string) {
		for _, h := range req.GetHeaders(name) {
			for _, t := range strings.Split(h.Value(), ",") {
				if t = strings.TrimSpace(t); t != "" {
					unsupported = append(unsupported, t)
				}
			}
		}
	}
	tags("Proxy-Require")
	if req.Method == sip.REGISTER || req.Method == sip.SUBSCRIBE || req.Method == sip.OPTIONS && !s.routedThrough(req) {
		tags("Require")
	}
	if len(unsupported) > 0 {
		return 420, "Bad Extension", []sip.Header{sip.NewHeader("Unsupported", strings.Join(unsupported, ", "))}
	}
	return 0, "", nil
}

// served reports whether m is a method this peer handles itself.
func served(m sip.RequestMethod) bool {
	switch m {
	case sip.REGISTER, sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.OPTIONS, sip.SUBSCRIBE:
		return true
	}
	return false
}
