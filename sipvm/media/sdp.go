package media

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Codec is an audio codec of the offer/answer: G.711 only.
type Codec struct {
	Name        string // "PCMU" or "PCMA"
	PayloadType uint8
}

func (c Codec) String() string {
	return fmt.Sprintf("%s/%d (pt %d)", c.Name, SampleRate, c.PayloadType)
}

var (
	// PCMU is G.711 μ-law, static payload type 0.
	PCMU = Codec{Name: "PCMU", PayloadType: 0}
	// PCMA is G.711 A-law, static payload type 8.
	PCMA = Codec{Name: "PCMA", PayloadType: 8}
)

// DefaultDTMFType is the payload type offered for telephone-event.
const DefaultDTMFType = 101

// ErrNoCommonCodec is returned when an offer has no audio codec this
// package speaks (a SIP answer of 488 Not Acceptable Here).
var ErrNoCommonCodec = errors.New("media: no common audio codec (PCMU or PCMA at 8 kHz)")

// ErrSDP marks an SDP body that cannot be used: unparsable, no audio
// stream, no address.
var ErrSDP = errors.New("media: unusable SDP")

// Remote is what an SDP body says about the other side's audio.
type Remote struct {
	// Addr is where the other side wants RTP (c= and m=audio port).
	Addr *net.UDPAddr
	// Codecs are the G.711 codecs it offers, in its order of preference.
	Codecs []Codec
	// DTMF is the payload type of its telephone-event/8000, -1 when none.
	DTMF int
}

// ParseSDP reads the first audio stream of an SDP body.
func ParseSDP(body []byte) (Remote, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(string(body)); err != nil {
		return Remote{}, fmt.Errorf("%w: %v", ErrSDP, err)
	}
	r := Remote{DTMF: -1}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" {
			continue
		}
		conn := d.ConnectionInformation
		if m.ConnectionInformation != nil {
			conn = m.ConnectionInformation
		}
		if conn == nil || conn.Address == nil {
			return r, fmt.Errorf("%w: audio stream without a c= address", ErrSDP)
		}
		ip := net.ParseIP(strings.SplitN(conn.Address.Address, "/", 2)[0])
		if ip == nil {
			return r, fmt.Errorf("%w: address %q is not an IP", ErrSDP, conn.Address.Address)
		}
		r.Addr = &net.UDPAddr{IP: ip, Port: m.MediaName.Port.Value}
		names := map[int]string{}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, ok := strings.Cut(a.Value, " ")
			n, err := strconv.Atoi(pt)
			if !ok || err != nil {
				continue
			}
			names[n] = strings.ToLower(enc)
		}
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.Atoi(f)
			if err != nil || pt < 0 || pt > 127 {
				continue
			}
			name, mapped := names[pt]
			switch {
			case name == "telephone-event/8000":
				if r.DTMF < 0 {
					r.DTMF = pt
				}
			case name == "pcmu/8000" || !mapped && pt == 0:
				r.Codecs = append(r.Codecs, Codec{Name: "PCMU", PayloadType: uint8(pt)})
			case name == "pcma/8000" || !mapped && pt == 8:
				r.Codecs = append(r.Codecs, Codec{Name: "PCMA", PayloadType: uint8(pt)})
			}
		}
		return r, nil
	}
	return r, fmt.Errorf("%w: no audio stream", ErrSDP)
}

// Choose returns the first codec of the offer that we support (PCMU and
// PCMA), or ErrNoCommonCodec.
func (r Remote) Choose() (Codec, error) {
	if len(r.Codecs) == 0 {
		return Codec{}, ErrNoCommonCodec
	}
	return r.Codecs[0], nil
}

// Describe returns an SDP body offering (or answering with) codecs and,
// when dtmf ≥ 0, telephone-event at that payload type, received at local.
func Describe(local *net.UDPAddr, codecs []Codec, dtmf int) []byte {
	ipv := "IP4"
	if local.IP.To4() == nil {
		ipv = "IP6"
	}
	var fmts []string
	var attrs strings.Builder
	for _, c := range codecs {
		fmts = append(fmts, strconv.Itoa(int(c.PayloadType)))
		fmt.Fprintf(&attrs, "a=rtpmap:%d %s/%d\r\n", c.PayloadType, c.Name, SampleRate)
	}
	if dtmf >= 0 {
		fmts = append(fmts, strconv.Itoa(dtmf))
		fmt.Fprintf(&attrs, "a=rtpmap:%d telephone-event/%d\r\na=fmtp:%d 0-16\r\n", dtmf, SampleRate, dtmf)
	}
	return fmt.Appendf(nil, "v=0\r\no=voicering 1 1 IN %[1]s %[2]s\r\ns=voicering\r\nc=IN %[1]s %[2]s\r\nt=0 0\r\nm=audio %[3]d RTP/AVP %[4]s\r\n%[5]sa=ptime:20\r\na=sendrecv\r\n",
		ipv, local.IP, local.Port, strings.Join(fmts, " "), attrs.String())
}

// Answer parses an offer and returns the remote side, the codec chosen
// (the offer's first that we support) and our answer, receiving at
// local. Errors wrap ErrSDP or ErrNoCommonCodec.
func Answer(offer []byte, local *net.UDPAddr) (Remote, Codec, []byte, error) {
	r, err := ParseSDP(offer)
	if err != nil {
		return r, Codec{}, nil, err
	}
	c, err := r.Choose()
	if err != nil {
		return r, c, nil, err
	}
	return r, c, Describe(local, []Codec{c}, r.DTMF), nil
}
