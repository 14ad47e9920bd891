package sipvm

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// plainRegister is a first REGISTER as phones send it.
const plainRegister = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK776asdhds;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: <sip:alice@example.com>\r\n" +
	"From: <sip:alice@example.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.example.com\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Contact: <sip:alice@192.0.2.4:5070>\r\n" +
	"Expires: 3600\r\n" +
	"Content-Length: 0\r\n\r\n"

// registersToScan are REGISTERs the fast path answers from their bytes.
var registersToScan = map[string]string{
	"plain, rport":        plainRegister,
	"no rport, no port":   strings.Replace(plainRegister, "192.0.2.4:5070;branch=z9hG4bK776asdhds;rport", "pc33.example.com;branch=z9hG4bK1", 1),
	"rport in the middle": strings.Replace(plainRegister, ";branch=z9hG4bK776asdhds;rport", ";rport;branch=z9hG4bK2", 1),
	"rport with a value":  strings.Replace(plainRegister, ";rport", ";rport=5070", 1),
	"compact and lower-case names": "REGISTER sips:example.com SIP/2.0\r\n" +
		"v: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK3;rport\r\n" +
		"t: sip:alice@EXAMPLE.com\r\n" +
		"f: <sip:alice@example.com>;tag=7\r\n" +
		"i: 1@pc33\r\n" +
		"cseq: 9 REGISTER\r\n" +
		"l: 0\r\n\r\n",
	"three Via lines": "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKproxy;rport\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKa\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKb\r\n" +
		"To: <sip:alice@example.com>;tag=already\r\n" +
		"From: <sip:alice@example.com>;tag=1\r\n" +
		"Call-ID: 2@pc33\r\n" +
		"CSeq: 2 REGISTER\r\n\r\n",
	"a folded header the fast path does not read": strings.Replace(plainRegister, "Expires: 3600\r\n", "Supported: path,\r\n  outbound\r\nExpires: 3600\r\n", 1),
	"credentials": strings.Replace(plainRegister, "Expires:", "Authorization: Digest username=\"alice\"\r\nExpires:", 1),
}

// registersNotScanned are REGISTERs left to sipgo and the registrar.
var registersNotScanned = map[string]string{
	"a body":        strings.Replace(plainRegister, "Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\nhi", 1),
	"LF line ends":  strings.ReplaceAll(plainRegister, "\r\n", "\n"),
	"Require":       strings.Replace(plainRegister, "Expires:", "Require: path\r\nExpires:", 1),
	"Proxy-Require": strings.Replace(plainRegister, "Expires:", "Proxy-Require: foo\r\nExpires:", 1),
	// Cases sipgo reads otherwise than RFC 3261 (found by review).
	"two Via values, port after":  strings.Replace(plainRegister, "192.0.2.4:5070;branch=z9hG4bK776asdhds;rport", "192.0.2.4, SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKa", 1),
	"two Via values, port before": strings.Replace(plainRegister, "192.0.2.4:5070;branch=z9hG4bK776asdhds;rport", "192.0.2.4:5070, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa", 1),
	"rport before a comma":        strings.Replace(plainRegister, ";rport", ";rport , SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa", 1),
	"two rport":                   strings.Replace(plainRegister, ";rport", ";rport;rport", 1),
	"TAG in capitals":             strings.Replace(plainRegister, "To: <sip:alice@example.com>", "To: <sip:alice@example.com>;TAG=abc", 1),
	"a tag of two =":              strings.Replace(plainRegister, "To: <sip:alice@example.com>", "To: <sip:alice@example.com>;tag=1=2", 1),
	"spaces in the Via":           strings.Replace(plainRegister, ";branch=z9hG4bK776asdhds;rport", " ; rport ;branch=z9hG4bK2", 1),
	"two From":                    strings.Replace(plainRegister, "Expires:", "From: <sip:bob@example.com>;tag=2\r\nExpires:", 1),
	"two Content-Length":          strings.Replace(plainRegister, "Expires:", "Content-Length: 0\r\nExpires:", 1),
	"folded To":                   strings.Replace(plainRegister, "To: <sip:alice@example.com>", "To:\r\n <sip:alice@example.com>", 1),
	"no CSeq":                     strings.Replace(plainRegister, "CSeq: 1 REGISTER\r\n", "", 1),
	"no Via":                      strings.Replace(plainRegister, "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK776asdhds;rport\r\n", "", 1),
	"CSeq of INVITE":              strings.Replace(plainRegister, "1 REGISTER", "1 INVITE", 1),
	"Via over TCP":                strings.Replace(plainRegister, "SIP/2.0/UDP", "SIP/2.0/TCP", 1),
	"Via with received":           strings.Replace(plainRegister, ";rport", ";received=192.0.2.1", 1),
	"IPv6 sent-by":                strings.Replace(plainRegister, "192.0.2.4:5070", "[2001:db8::9]:5070", 1),
	"To with a name":              strings.Replace(plainRegister, "To: <sip:", "To: \"Alice\" <sip:", 1),
	"tel URI":                     strings.Replace(plainRegister, "REGISTER sip:example.com", "REGISTER tel:+15551234", 1),
	"SIP/3.0":                     strings.Replace(plainRegister, "SIP/2.0\r\n", "SIP/3.0\r\n", 1),
	"no blank line":               strings.TrimSuffix(plainRegister, "\r\n"),
	"a header with no colon":      strings.Replace(plainRegister, "Expires:", "Garbage\r\nExpires:", 1),
	"empty Call-ID":               strings.Replace(plainRegister, "Call-ID: a84b4c76e66710@pc33.example.com", "Call-ID: ", 1),
}

var testSrc = &net.UDPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40123}

func TestScanRegister(t *testing.T) {
	for name, msg := range registersToScan {
		t.Run(name, func(t *testing.T) {
			r, ok := scanRegister([]byte(msg))
			if !ok {
				t.Fatalf("not scanned:\n%s", msg)
			}
			if wantAuth := strings.Contains(msg, "Authorization:"); r.auth != wantAuth {
				t.Errorf("auth %v, want %v", r.auth, wantAuth)
			}
			sameAsSipgo(t, []byte(msg), &r)
		})
	}
	for name, msg := range registersNotScanned {
		t.Run(name, func(t *testing.T) {
			if _, ok := scanRegister([]byte(msg)); ok {
				t.Fatalf("scanned, want it left to sipgo:\n%s", msg)
			}
		})
	}
}

// sameAsSipgo checks that what scanRegister read from b agrees with
// sipgo's parse of it, that the registrar would not refuse it before
// looking at its credentials, and that the answers built from its bytes
// say what sipgo's would: status, Via (with rport and received filled
// in), From, To (with a tag), Call-ID and CSeq.
func sameAsSipgo(t *testing.T, b []byte, r *rawRegister) {
	t.Helper()
	m, err := sip.NewParser().ParseSIP(b)
	if err != nil {
		// A header the fast path does not read may be one sipgo
		// refuses (a Contact, a Content-Type): the fast path challenges
		// such a REGISTER where sipgo would drop it, and sipgo drops its
		// authenticated retry. What the fast path reads must parse.
		m, err = sip.NewParser().ParseSIP(onlyRead(b))
		if err != nil {
			t.Fatalf("scanned, but sipgo cannot parse what the fast path reads (%v):\n%q", err, onlyRead(b))
		}
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Method != sip.REGISTER {
		t.Fatalf("scanned, but sipgo reads no REGISTER:\n%q", b)
	}
	req.SetSource(testSrc.String())
	req.SetTransport("UDP")
	s := &Server{}
	if code, reason, _ := s.refuse(req); code != 0 {
		t.Fatalf("scanned, but the registrar refuses it %d %s:\n%q", code, reason, b)
	}
	to, via := req.To(), req.Via()
	if to == nil || via == nil || req.CallID() == nil || req.CSeq() == nil || req.From() == nil {
		t.Fatalf("scanned, but sipgo finds no To, Via, Call-ID, CSeq or From:\n%q", b)
	}
	if !strings.EqualFold(string(r.toHost), to.Address.Host) {
		t.Errorf("To host %q, sipgo reads %q", r.toHost, to.Address.Host)
	}
	if want := req.GetHeader("Authorization") != nil; r.auth != want {
		t.Errorf("auth %v, sipgo finds an Authorization: %v", r.auth, want)
	}
	if got, want := r.replyAddr(testSrc).String(), replyAddr(testSrc, via).String(); got != want {
		t.Errorf("answer goes to %s, want %s", got, want)
	}
	raw := r.appendAnswer(nil, 401, "Unauthorized", testSrc, `WWW-Authenticate: Digest realm="example.com"`)
	m, err = sip.NewParser().ParseSIP(raw)
	if err != nil {
		t.Fatalf("the answer does not parse (%v):\n%s", err, raw)
	}
	got, ok := m.(*sip.Response)
	if !ok || got.StatusCode != 401 || got.Reason != "Unauthorized" {
		t.Fatalf("answer %q, want a 401 Unauthorized", raw)
	}
	want := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	for _, name := range []string{"Via", "From", "Call-ID", "CSeq"} {
		if g, w := headerValues(got, name), headerValues(want, name); g != w {
			t.Errorf("%s: %q, sipgo answers %q", name, g, w)
		}
	}
	gt, wt := got.To(), want.To()
	gtag, _ := gt.Params.Get("tag")
	wtag, _ := wt.Params.Get("tag")
	if gtag == "" || (r.toTag && gtag != wtag) {
		t.Errorf("To tag %q, sipgo answers %q", gtag, wtag)
	}
	if gt.Address.String() != wt.Address.String() {
		t.Errorf("To %s, sipgo answers %s", gt.Address.String(), wt.Address.String())
	}
	if h := got.GetHeader("WWW-Authenticate"); h == nil || h.Value() != `Digest realm="example.com"` {
		t.Errorf("WWW-Authenticate %v", h)
	}
	if cl := got.ContentLength(); cl == nil || *cl != 0 || len(got.Body()) != 0 {
		t.Errorf("Content-Length %v, body %q", cl, got.Body())
	}
}

// onlyRead returns the REGISTER b with only the header lines that
// scanRegister reads.
func onlyRead(b []byte) []byte {
	head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	lines := bytes.Split(head, []byte("\r\n"))
	out := append(bytes.Clone(lines[0]), "\r\n"...)
	keep := false
	for _, l := range lines[1:] {
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') { // folded: as the line before
			if keep {
				out = append(append(out, l...), "\r\n"...)
			}
			continue
		}
		name, _, _ := bytes.Cut(l, []byte(":"))
		switch strings.ToLower(strings.TrimRight(string(name), " \t")) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "content-length", "l", "authorization":
			keep = true
			out = append(append(out, l...), "\r\n"...)
		default:
			keep = false
		}
	}
	return append(out, "\r\n"...)
}

func headerValues(m sip.Message, name string) string {
	var vs []string
	for _, h := range m.GetHeaders(name) {
		vs = append(vs, h.Value())
	}
	return strings.Join(vs, " | ")
}

// FuzzScanRegister holds the fast path to sipgo: whatever it scans, sipgo
// parses to the same transaction, the registrar would challenge, and the
// answer from its bytes says what sipgo's would.
func FuzzScanRegister(f *testing.F) {
	tortureSeeds(f)
	for _, m := range registersToScan {
		f.Add([]byte(m))
	}
	for _, m := range registersNotScanned {
		f.Add([]byte(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !bytes.HasPrefix(b, []byte("REGISTER ")) {
			return // udpFront hands only these to the workers
		}
		r, ok := scanRegister(b)
		if !ok {
			return
		}
		sameAsSipgo(t, b, &r)
	})
}

func BenchmarkScanRegister(b *testing.B) {
	msg := []byte(plainRegister)
	for b.Loop() {
		if _, ok := scanRegister(msg); !ok {
			b.Fatal("not scanned")
		}
	}
}

// BenchmarkParseRegister is the baseline: sipgo's parse of the same
// REGISTER.
func BenchmarkParseRegister(b *testing.B) {
	msg := []byte(plainRegister)
	p := sip.NewParser()
	for b.Loop() {
		if _, err := p.ParseSIP(msg); err != nil {
			b.Fatal(err)
		}
	}
}
