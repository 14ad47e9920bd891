package sipvm

import (
	"bytes"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// rawRegister is a REGISTER datagram scanned rather than parsed: where the
// header lines an answer copies lie, and the few values the fast path
// reads. scanRegister accepts only the plain form phones send (CRLF line
// ends, no folded header among those it reads, one Via value per line,
// one From, To, Call-ID and CSeq, no body, no Require); anything else
// goes to sipgo's parser and the registrar's full checks. The aim is that
// the fast path never answers what the slow one would answer otherwise,
// even where sipgo reads a message otherwise than RFC 3261 does:
// FuzzScanRegister checks it, and TestScanRegister keeps the cases found.
// One difference is left on purpose: a header the fast path does not read
// (a Contact, say) is not checked, so a first REGISTER whose Contact
// sipgo would refuse gets its 401 where sipgo would have dropped it; the
// authenticated REGISTER that follows goes through sipgo and is dropped.
//
// Why: half of a registration's REGISTERs are the first, answered with a
// 401 that needs none of what sipgo's parser builds, and every answer
// repeats the request's Via, From, To, Call-ID and CSeq lines, which a
// copy of their bytes does for a fraction of sipgo's response building
// (Kamailio answers the same way, from the raw message).
type rawRegister struct {
	b                      []byte
	vias                   [maxRawVias]span // Via lines, in order
	nvia                   int
	from, to, callID, cseq span
	auth                   bool // an Authorization header

	toHost []byte // the To URI's host
	toTag  bool   // the To header has a tag

	// The top Via: its value ends at topEnd (a comma or the line's end);
	// rport, when it has one without a value, ends at rportEnd.
	viaPort  int // sent-by port, 0 when none
	rport    bool
	rportEnd int
	topEnd   int
}

// span is b[start:end] of a whole header line, without its CRLF.
type span struct{ start, end int }

// maxRawVias bounds the Via lines the fast path copies; a REGISTER with
// more (through a chain of proxies) goes to sipgo.
const maxRawVias = 4

// scanRegister scans b, a datagram starting "REGISTER ", and reports
// whether the fast path may answer it.
func scanRegister(b []byte) (r rawRegister, ok bool) {
	r.b = b
	eol := bytes.Index(b, crlf)
	if eol < 0 {
		return r, false
	}
	line := b[:eol]
	if !plainText(line) {
		return r, false
	}
	if len(line) < len("REGISTER  SIP/2.0")+1 || !bytes.HasPrefix(line, []byte("REGISTER ")) || !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		return r, false
	}
	uri := line[len("REGISTER ") : len(line)-len(" SIP/2.0")]
	if _, _, ok := scanAddr(uri); !ok || bytes.IndexByte(uri, '<') >= 0 {
		return r, false
	}
	pos := eol + 2
	seen := 0 // which of From, To, Call-ID, CSeq: bits
	for {
		if pos+2 > len(b) {
			return r, false // no blank line
		}
		if b[pos] == '\r' && b[pos+1] == '\n' {
			if pos+2 != len(b) { // a body: not a plain REGISTER
				return r, false
			}
			break
		}
		end := pos + bytes.Index(b[pos:], crlf)
		if end < pos || !plainText(b[pos:end]) {
			return r, false
		}
		folded := false
		for end+2 < len(b) && (b[end+2] == ' ' || b[end+2] == '\t') {
			folded = true
			next := bytes.Index(b[end+2:], crlf)
			if next < 0 || !plainText(b[end+2:end+2+next]) {
				return r, false
			}
			end += 2 + next
		}
		colon := bytes.IndexByte(b[pos:end], ':')
		if colon <= 0 {
			return r, false
		}
		name := bytes.TrimRight(b[pos:pos+colon], " \t")
		if !allToken(name) {
			return r, false
		}
		value := bytes.Trim(b[pos+colon+1:end], " \t")
		sp := span{pos, end}
		bit := 0
		switch {
		case isName(name, "via", "v"):
			// One value per line: sipgo reads a line of several
			// values (comma separated) in ways of its own.
			if folded || r.nvia == maxRawVias || bytes.IndexByte(b[pos:end], ',') >= 0 {
				return r, false
			}
			r.vias[r.nvia] = sp
			r.nvia++
		case isName(name, "from", "f"):
			bit = 1
			r.from = sp
		case isName(name, "to", "t"):
			bit = 2
			r.to = sp
		case isName(name, "call-id", "i"):
			bit = 4
			r.callID = sp
			if len(value) == 0 {
				return r, false
			}
		case isName(name, "cseq", ""):
			bit = 8
			r.cseq = sp
			if !validCSeq(value) {
				return r, false
			}
		case isName(name, "authorization", ""):
			r.auth = true
		case isName(name, "content-length", "l"):
			if !bytes.Equal(value, []byte("0")) {
				return r, false
			}
			bit = 16
		case isName(name, "require", ""), isName(name, "proxy-require", ""):
			return r, false
		}
		if bit != 0 {
			if folded || seen&bit != 0 {
				return r, false
			}
			seen |= bit
		}
		pos = end + 2
	}
	if seen&15 != 15 || r.nvia == 0 {
		return r, false
	}
	return r, r.scanFromTo() && r.scanVias()
}

var crlf = []byte("\r\n")

// scanFromTo reads the To header's URI host and whether it has a tag; the
// From header must read as well.
func (r *rawRegister) scanFromTo() bool {
	if _, _, ok := scanAddr(headerValue(r.b, r.from)); !ok {
		return false
	}
	host, tag, ok := scanAddr(headerValue(r.b, r.to))
	r.toHost, r.toTag = host, tag
	return ok
}

// scanAddr reads a From or To value: the host of its sip or sips URI and
// whether it has a tag. Display names and IPv6 hosts are left to sipgo.
func scanAddr(v []byte) (host []byte, tag, ok bool) {
	if indexClass(v, quoteOrSpace) >= 0 {
		return nil, false, false
	}
	uri, params := v, []byte(nil)
	if lt := bytes.IndexByte(v, '<'); lt >= 0 {
		gt := bytes.IndexByte(v, '>')
		if lt != 0 || gt < lt {
			return nil, false, false
		}
		uri, params = v[lt+1:gt], v[gt+1:]
	} else if semi := bytes.IndexByte(v, ';'); semi >= 0 {
		uri, params = v[:semi], v[semi:]
	}
	switch {
	case hasPrefixFold(uri, "sip:"):
		uri = uri[4:]
	case hasPrefixFold(uri, "sips:"):
		uri = uri[5:]
	default:
		return nil, false, false
	}
	if at := bytes.IndexByte(uri, '@'); at >= 0 {
		uri = uri[at+1:]
	}
	rest := []byte(nil)
	if i := indexClass(uri, uriEnd); i >= 0 {
		uri, rest = uri[:i], uri[i:]
	}
	if !isHost(uri) {
		return nil, false, false
	}
	if len(rest) > 0 && rest[0] == ':' { // a port: 1 to 5 digits
		n := 1
		for n < len(rest) && n <= 6 && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 6 {
			return nil, false, false
		}
		rest = rest[n:]
	}
	if len(rest) > 0 && rest[0] != ';' && rest[0] != '?' {
		return nil, false, false
	}
	if len(params) > 0 && params[0] != ';' {
		return nil, false, false
	}
	for len(params) > 0 {
		params = params[1:] // the ';'
		p := params
		if n := bytes.IndexByte(params, ';'); n >= 0 {
			p, params = params[:n], params[n:]
		} else {
			params = nil
		}
		k, val, hasVal := bytes.Cut(p, []byte("="))
		if !allToken(k) || hasVal && !allToken(val) {
			return nil, false, false
		}
		switch {
		case string(k) == "tag": // sipgo reads only this case
			tag = true
		case len(k) == 3 && hasPrefixFold(k, "tag"):
			return nil, false, false
		}
	}
	return uri, tag, true
}

// scanVias checks every Via line (one value each) and reads the top
// one's sent-by port and rport, where the answer goes (replyAddr). The top
// Via must be over UDP, without a received parameter (the answer adds its
// own).
func (r *rawRegister) scanVias() bool {
	for n, sp := range r.vias[:r.nvia] {
		i := sp.start + bytes.IndexByte(r.b[sp.start:sp.end], ':') + 1
		v, ok := scanVia(r.b, i, sp.end)
		if !ok {
			return false
		}
		if n == 0 {
			if !v.udp || v.received {
				return false
			}
			r.viaPort, r.rport, r.rportEnd, r.topEnd = v.port, v.rport, v.rportEnd, v.end
		}
	}
	return true
}

// via is what scanVia reads of one Via value.
type via struct {
	port            int  // sent-by port, 0 when none
	udp             bool // SIP/2.0/UDP
	rport, received bool // rport without a value; received
	rportEnd        int  // where rport ends in b
	end             int  // where the value ends in b, white space trimmed
}

// scanVia reads the Via value b[i:end]: "SIP/2.0/TRANSPORT host[:port]",
// then ";name[=value]" parameters, with no white space but around it and
// after the protocol (sipgo reads white space between parameters
// differently), no quotes and no IPv6 host.
func scanVia(b []byte, i, end int) (v via, ok bool) {
	for i < end && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	for end > i && (b[end-1] == ' ' || b[end-1] == '\t') {
		end--
	}
	v.end = end
	sp := bytes.IndexByte(b[i:end], ' ')
	if sp < 0 {
		return v, false
	}
	proto, rest := b[i:i+sp], i+sp+1
	transport, found := bytes.CutPrefix(proto, []byte("SIP/2.0/"))
	if !found || !allToken(transport) {
		return v, false
	}
	v.udp = bytes.EqualFold(transport, []byte("UDP"))
	if indexClass(b[rest:end], quoteOrSpace|viaStop) >= 0 {
		return v, false
	}
	pend := end
	if semi := bytes.IndexByte(b[rest:end], ';'); semi >= 0 {
		end = rest + semi
	}
	host, port, hasPort := bytes.Cut(b[rest:end], []byte(":"))
	if !isHost(host) {
		return v, false
	}
	if hasPort {
		p, err := strconv.Atoi(string(port))
		if err != nil || p <= 0 || p > 65535 || port[0] == '+' {
			return v, false
		}
		v.port = p
	}
	seenRport := false
	for j := end + 1; end < pend && j <= pend; {
		k := pend
		if n := bytes.IndexByte(b[j:pend], ';'); n >= 0 {
			k = j + n
		}
		name, val, hasVal := bytes.Cut(b[j:k], []byte("="))
		if !allToken(name) || hasVal && !allToken(val) {
			return v, false
		}
		switch {
		case bytes.EqualFold(name, []byte("received")):
			v.received = true
		case bytes.EqualFold(name, []byte("rport")):
			if string(name) != "rport" || seenRport { // sipgo reads only this case, and the first
				return v, false
			}
			seenRport = true
			if !hasVal {
				v.rport, v.rportEnd = true, k
			}
		}
		j = k + 1
	}
	return v, true
}

// replyAddr is where the answer to r from src goes: as replyAddr, from
// the scanned top Via.
func (r *rawRegister) replyAddr(src *net.UDPAddr) net.Addr {
	if r.rport {
		return src
	}
	port := r.viaPort
	if port == 0 {
		port = sip.DefaultUdpPort
	}
	return &net.UDPAddr{IP: src.IP, Port: port, Zone: src.Zone}
}

// appendAnswer appends to dst the answer code reason to r, from src:
// its Via lines (the top one with rport and received filled in, RFC
// 3581), From, To (with a tag of ours when it had none), Call-ID and CSeq,
// then the lines of extra, each "Name: value", and no body.
func (r *rawRegister) appendAnswer(dst []byte, code int, reason string, src *net.UDPAddr, extra ...string) []byte {
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, crlf...)
	for i, sp := range r.vias[:r.nvia] {
		if i > 0 || !r.rport {
			dst = append(append(dst, r.b[sp.start:sp.end]...), crlf...)
			continue
		}
		dst = append(dst, r.b[sp.start:r.rportEnd]...)
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, int64(src.Port), 10)
		dst = append(dst, r.b[r.rportEnd:r.topEnd]...)
		dst = append(dst, ";received="...)
		dst = append(dst, src.IP.String()...)
		dst = append(dst, r.b[r.topEnd:sp.end]...)
		dst = append(dst, crlf...)
	}
	dst = append(append(dst, r.b[r.from.start:r.from.end]...), crlf...)
	dst = append(dst, r.b[r.to.start:r.to.end]...)
	if !r.toTag && code > 100 {
		dst = append(dst, ";tag="...)
		dst = strconv.AppendUint(dst, rand.Uint64(), 36)
	}
	dst = append(dst, crlf...)
	dst = append(append(dst, r.b[r.callID.start:r.callID.end]...), crlf...)
	dst = append(append(dst, r.b[r.cseq.start:r.cseq.end]...), crlf...)
	for _, h := range extra {
		dst = append(append(dst, h...), crlf...)
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// rawBufs holds answer buffers for appendAnswer.
var rawBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func headerValue(b []byte, sp span) []byte {
	line := b[sp.start:sp.end]
	return bytes.Trim(line[bytes.IndexByte(line, ':')+1:], " \t")
}

// isName reports whether name is the header long (lower case) or its
// compact form short.
func isName(name []byte, long, short string) bool {
	return len(name) == len(long) && hasPrefixFold(name, long) || len(name) == len(short) && short != "" && hasPrefixFold(name, short)
}

// hasPrefixFold reports whether b begins with prefix, a lower-case ASCII
// string, in any case.
func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// validCSeq reports whether v is "NUMBER REGISTER".
func validCSeq(v []byte) bool {
	n, m, ok := bytes.Cut(v, []byte(" "))
	if !ok || len(n) > 10 { // ParseUint takes digits only, and at least one
		return false
	}
	_, err := strconv.ParseUint(string(n), 10, 32)
	return err == nil && string(m) == "REGISTER"
}

// isHost reports whether b is a host name or IPv4 address.
func isHost(b []byte) bool { return allIn(b, hostChar) }

// allToken reports whether b is a non-empty token.
func allToken(b []byte) bool { return allIn(b, tokenChar) }

// allIn reports whether b is not empty and all its bytes are in class.
func allIn(b []byte, class uint8) bool {
	for _, c := range b {
		if charClass[c]&class == 0 {
			return false
		}
	}
	return len(b) > 0
}

// charClass classes bytes for the scanner: tokenChar for RFC 7230 tchar,
// hostChar for host names, control for control characters but tab, and
// the sets the scanner stops at.
var charClass = func() (t [256]uint8) {
	for c := range 256 {
		if isToken(byte(c)) {
			t[c] |= tokenChar
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			t[c] |= hostChar
		}
		if c < ' ' && c != '\t' || c == 0x7f {
			t[c] |= control
		}
		switch c {
		case '"', '[', ' ', '\t':
			t[c] |= quoteOrSpace
		case ']', ',':
			t[c] |= viaStop
		}
		switch c {
		case ':', ';', '?', '>':
			t[c] |= uriEnd
		}
	}
	return t
}()

const (
	tokenChar = 1 << iota
	hostChar
	control
	quoteOrSpace // " [ space tab
	viaStop      // ] ,
	uriEnd       // : ; ? >
)

// plainText reports whether line holds no control character but tabs.
func plainText(line []byte) bool {
	return indexClass(line, control) < 0
}

// indexClass returns the index of the first byte of b in class, or -1.
func indexClass(b []byte, class uint8) int {
	for i, c := range b {
		if charClass[c]&class != 0 {
			return i
		}
	}
	return -1
}
