package sipvm_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/voicering/voicering/sipvm"
)

// tortureDomain is the domain of the ring the torture messages are sent
// to: most of RFC 4475's requests are addressed to example.com, so they
// reach the registrar and router rather than a "wrong domain" refusal.
const tortureDomain = "example.com"

// tortureCases are RFC 4475's messages (testdata/sip/rfc4475, one file
// per message, named as in the RFC) and what a peer of a ring serving
// example.com answers to each, over UDP and TCP alike.
//
// want lists the final answers allowed; silent allows none (the message
// does not parse, is a response, or its answer cannot be sent: the peer
// drops it, as RFC 3261 allows). With want nil, any 4xx is allowed too.
// A 2xx is never allowed unless listed. After every message the peer
// must still answer an OPTIONS with 200.
//
// rfc notes where the RFC expects another answer than the peer gives
// (sipgo's parser and transaction layer decide most of these); the test
// logs them so they stay visible.
var tortureCases = []struct {
	file   string
	want   []int
	silent bool
	rfc    string
}{
	// 3.1.1 valid messages.
	{file: "wsinv", want: []int{400}, rfc: "valid: sipgo cannot read its Via with LWS around the slashes; 403 (we do not relay) expected"},
	{file: "intmeth", want: []int{405}},
	{file: "esc01", want: []int{403}},   // INVITE for example.net: we do not relay
	{file: "escnull", want: []int{401}}, // REGISTER: challenged
	{file: "esc02", want: []int{405}},   // RE%47IST%45R is an unknown method
	{file: "lwsdisp", want: []int{200}},
	{file: "longreq", want: []int{480}, silent: true, rfc: "over UDP the answer (with its many Via) exceeds what sipgo sends over UDP and is dropped"},
	{file: "dblreq", want: []int{401}, silent: true, rfc: "valid over UDP (the INVITE after Content-Length is ignored): sipgo drops the datagram"},
	{file: "semiuri", want: []int{200}},
	{file: "transports", want: []int{200}},
	{file: "mpart01", want: []int{405}}, // MESSAGE is not served
	{file: "unreason", silent: true},    // a response matching no transaction
	{file: "noreason", silent: true},    // likewise
	// 3.1.2 invalid messages.
	{file: "badinv01", silent: true},
	{file: "clerr", silent: true},
	{file: "scalar02", silent: true},
	{file: "scalarlg", silent: true},
	{file: "quotbal", silent: true},
	{file: "ltgtruri", silent: true},
	{file: "lwsruri", silent: true},
	{file: "lwsstart", silent: true},
	{file: "trws", silent: true},
	{file: "escruri", want: []int{480}, rfc: "400 expected (escaped headers in the Request-URI)"},
	{file: "baddate", want: []int{480}, rfc: "400 expected (a Date not in GMT)"},
	{file: "regbadct", want: []int{401}},
	{file: "badaspec", silent: true},
	{file: "baddn", silent: true},
	{file: "badvers", want: []int{505}},
	{file: "mismatch01", want: []int{400}, silent: true, rfc: "dropped by sipgo over UDP"},
	{file: "mismatch02", want: []int{400, 405, 501}}, // RFC 4475: 501, or 400
	{file: "bigcode", silent: true},
	// 3.2 transaction layer.
	{file: "badbranch", want: []int{200}},
	// 3.3 application layer.
	{file: "insuf", silent: true},
	{file: "unkscm", want: []int{416}},
	{file: "novelsc", silent: true},
	{file: "unksm2", want: []int{403}},
	{file: "bext01", want: []int{420}},
	{file: "invut", want: []int{480}, rfc: "415 expected (an unknown Content-Type)"},
	{file: "regaut01", want: []int{403}},
	{file: "multi01", silent: true},
	{file: "mcl01", want: []int{400}, silent: true, rfc: "dropped by sipgo over TCP"},
	{file: "bcast", silent: true},      // a response
	{file: "zeromf", want: []int{200}}, // OPTIONS for this peer: it may answer (RFC 3261 16.3)
	{file: "cparam01", want: []int{401}},
	{file: "cparam02", silent: true},
	{file: "regescrt", want: []int{401}, silent: true}, // shares its transaction (branch) with an earlier REGISTER here: may be taken as its retransmission
	{file: "sdp01", want: []int{480}, rfc: "415 expected (Accept without application/sdp)"},
	// 3.4 backward compatibility.
	{file: "inv2543", want: []int{400}, silent: true, rfc: "an RFC 2543 INVITE (no branch) should be served"},
	{file: "ncl", silent: true},
}

// TestTorture sends each RFC 4475 torture message to a peer of a running
// ring over UDP and over TCP, checks the answer (or the silence), and
// that the peer still answers OPTIONS after it.
func TestTorture(t *testing.T) {
	dir := filepath.Join("..", "testdata", "sip", "rfc4475")
	files, err := filepath.Glob(filepath.Join(dir, "*.dat"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tc := range tortureCases {
		names = append(names, tc.file)
	}
	for _, f := range files {
		if n := strings.TrimSuffix(filepath.Base(f), ".dat"); !slices.Contains(names, n) {
			t.Errorf("%s has no case in tortureCases", f)
		}
	}
	r := newSIPRing(t, 3, func(c *sipvm.Config) { c.Domain = tortureDomain })
	var seq atomic.Int64
	// UDP goes to peer 0 and TCP to peer 1: the same message over TCP to
	// the same peer would be a retransmission of the UDP one.
	for _, tc := range tortureCases {
		msg, err := os.ReadFile(filepath.Join(dir, tc.file+".dat"))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		for i, network := range []string{"udp", "tcp"} {
			t.Run(tc.file+"/"+network, func(t *testing.T) {
				got := exchange(t, network, r.sip(i).Addr(), msg, !tc.silent, &seq)
				var finals []int
				for _, c := range got {
					if c >= 200 {
						finals = append(finals, c)
					}
				}
				for _, c := range finals {
					if !slices.Contains(tc.want, c) && (tc.want != nil || c/100 != 4) {
						t.Errorf("answered %d, want one of %v", c, tc.want)
					}
				}
				if len(finals) == 0 && !tc.silent {
					t.Errorf("no answer, want one of %v", tc.want)
				}
				if tc.rfc != "" {
					t.Logf("answered %v; RFC 4475: %s", finals, tc.rfc)
				}
			})
		}
	}
}

// exchange sends msg to addr over network and returns the final status
// codes answered to it (matched by Call-ID). When answer is set it waits
// for a final answer first. Then it sends an OPTIONS and fails the test
// unless the peer answers it 200.
//
// Over UDP a request without rport is answered at the source address and
// the port of its Via (RFC 3261 18.2.2), 5060 mostly, so the test
// listens there on a loopback address of its own (127.77.0.1), not to
// collide with a SIP server on 127.0.0.1:5060.
func exchange(t *testing.T, network, addr string, msg []byte, answer bool, seq *atomic.Int64) []int {
	t.Helper()
	callID := callIDOf(msg)
	probeID := fmt.Sprintf("probe-%d@voicering.test", seq.Add(1))
	deadline := time.Now().Add(10 * time.Second)
	answers := make(chan *sip.Response, 64)
	var readers sync.WaitGroup
	var conns []io.Closer
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	}()
	var sendProbe func() error
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", net.JoinHostPort("127.77.0.1", strconv.Itoa(viaPort(msg))))
		if err != nil {
			t.Fatalf("listen where the peer answers: %v", err)
		}
		conns = append(conns, c)
		to, _ := net.ResolveUDPAddr("udp", addr)
		readers.Go(func() {
			buf := make([]byte, 65536)
			c.SetReadDeadline(deadline)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				if res, ok := parseResponse(buf[:n]); ok {
					answers <- res
				}
			}
		})
		if _, err := c.WriteTo(msg, to); err != nil {
			t.Fatal(err)
		}
		sendProbe = func() error {
			_, err := c.WriteTo(optionsProbe(c.LocalAddr().String(), "UDP", probeID), to)
			return err
		}
	default:
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		readers.Go(func() { readResponses(c, deadline, func(res *sip.Response) { answers <- res }) })
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		// The probe goes on a connection of its own: a message whose
		// Content-Length runs past its end would swallow it.
		sendProbe = func() error {
			p, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			conns = append(conns, p)
			readers.Go(func() { readResponses(p, deadline, func(res *sip.Response) { answers <- res }) })
			_, err = p.Write(optionsProbe(p.LocalAddr().String(), "TCP", probeID))
			return err
		}
	}
	var codes []int
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	next := func() *sip.Response {
		select {
		case res := <-answers:
			return res
		case <-timeout.C:
			return nil
		}
	}
	for answer && !slices.ContainsFunc(codes, func(c int) bool { return c >= 200 }) {
		res := next()
		if res == nil {
			t.Fatalf("no final answer to the message (got %v)", codes)
		}
		if res.CallID().Value() == callID {
			codes = append(codes, res.StatusCode)
		}
	}
	if err := sendProbe(); err != nil {
		t.Fatalf("send OPTIONS: %v", err)
	}
	for {
		res := next()
		if res == nil {
			t.Fatalf("no 200 to an OPTIONS sent after the message (answers to it: %v)", codes)
		}
		switch res.CallID().Value() {
		case probeID:
			if res.StatusCode == 200 {
				return codes
			}
		case callID:
			codes = append(codes, res.StatusCode)
		}
	}
}

// viaPort returns the port of msg's top Via, 5060 when it has none or
// msg does not parse.
func viaPort(msg []byte) int {
	m, err := sip.ParseMessage(msg)
	if err != nil {
		return 5060
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Via() == nil || req.Via().Port == 0 {
		return 5060
	}
	return req.Via().Port
}

// readResponses reads SIP responses from a stream until it fails or the
// deadline, calling f for each.
func readResponses(c net.Conn, deadline time.Time, f func(*sip.Response)) {
	c.SetReadDeadline(deadline)
	br := bufio.NewReader(c)
	for {
		var head bytes.Buffer
		clen := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			l := strings.TrimRight(line, "\r\n")
			if l == "" {
				if head.Len() == len(line) { // keep-alive CRLF
					head.Reset()
					continue
				}
				break
			}
			if k, v, ok := strings.Cut(l, ":"); ok && (strings.EqualFold(strings.TrimSpace(k), "Content-Length") || strings.TrimSpace(k) == "l") {
				fmt.Sscan(strings.TrimSpace(v), &clen)
			}
		}
		body := make([]byte, clen)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		if res, ok := parseResponse(append(head.Bytes(), body...)); ok {
			f(res)
		}
	}
}

func parseResponse(b []byte) (*sip.Response, bool) {
	m, err := sip.ParseMessage(b)
	if err != nil {
		return nil, false
	}
	res, ok := m.(*sip.Response)
	return res, ok && res.CallID() != nil
}

// callIDOf returns the Call-ID of a raw message ("" when it has none).
func callIDOf(msg []byte) string {
	for _, line := range strings.Split(string(msg), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (strings.EqualFold(strings.TrimSpace(k), "Call-ID") || strings.TrimSpace(k) == "i") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func optionsProbe(local, transport, callID string) []byte {
	return fmt.Appendf(nil, "OPTIONS sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/%s %s;branch=z9hG4bK-%s;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:probe@voicering.test>;tag=probe\r\n"+
		"To: <sip:%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n", tortureDomain, transport, local, strings.NewReplacer("@", "-", ".", "-").Replace(callID), tortureDomain, callID)
}
