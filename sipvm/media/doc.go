// Package media is the audio side of voicemail: SDP offer/answer, RTP
// sessions with symmetric RTP, G.711 (PCMU, PCMA), RFC 4733 DTMF, a jitter
// buffer and 16-bit PCM mono 8 kHz WAV.
//
// # Why not diago
//
// github.com/emiago/diago (v0.31.0, by sipgo's author) was evaluated
// first. Its call layer (DialogServerSession) is created by Diago.Serve,
// which installs its own INVITE handlers on the user agent it owns; our
// INVITEs are routed by sipvm's own sipgo handlers and only reach
// voicemail through the sipvm.Voicemail seam, after forking failed, so
// that layer does not fit. Its media package alone could be used, but it
// is configured through package-level variables (RTPPortStart, RTPDebug,
// the JITTER_DEBUG environment variable), which our no-global-state rule
// forbids (fifty peers in one test process must not share settings), and
// it brings DTLS, SRTP and cgo Opus along and is built against sipgo
// v1.4.3 (we run v1.7.2). What voicemail needs is small: this package
// builds it on github.com/pion/rtp (packet codec) and
// github.com/pion/sdp/v3 (SDP parser), with its own G.711.
//
// # Pieces
//
//   - Answer/ParseSDP/Describe: the offer's first codec that we speak
//     (PCMU or PCMA at 8 kHz) is chosen; none gives ErrNoCommonCodec,
//     which SIP answers with 488. telephone-event/8000 is echoed at the
//     offer's payload type.
//   - Session: sends 20 ms packets paced in real time (Play, SendDigit),
//     receives (Receive) through a Jitter and a Digits decoder. The
//     first valid packet fixes the peer's source address: replies go there
//     from then on (symmetric RTP, so callers behind NAT are heard and
//     hear), packets from other sources are dropped.
//   - Jitter: reorders by sequence number, drops duplicates and late
//     packets, gives a missing packet up once Depth packets wait behind
//     it and reports the gap (filled with silence by Session); a jump of
//     more than 500 packets is taken as a new stream. Driven only by
//     arriving packets, so it is deterministic under test.
//   - Digits: an RFC 4733 event is one RTP timestamp; its key is reported
//     at the first end packet (the two retransmitted end packets are
//     ignored) or, if the end was lost, when the next event starts.
//   - WAV: 44-byte header, 16-bit PCM mono 8 kHz. A recording streamed
//     while it is made is written with UnknownSize in both size fields;
//     ReadHeader reads that as "to the end of the stream" and PatchSizes
//     fixes it when the stream lands in a file.
//
// Every decoder of network or disk bytes here (SDP, RTP into the jitter
// buffer and DTMF, WAV headers) has a fuzz test.
package media
