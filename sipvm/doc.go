// Package sipvm is the SIP face of a voicering peer: a registrar, a
// stateful forking proxy and the voicemail service (Config.VM).
//
// Every peer can serve every user, because no SIP state lives in the peer:
// accounts and bindings are records on the ring (see Records). A REGISTER
// taken by one peer is a record write on the AOR's replica set, so an
// INVITE arriving at any other peer finds the contact with one quorum read.
// A peer that crashes loses nothing but the transactions in flight.
//
// # Records
//
//   - cred:sip:USER@DOMAIN holds the digest HA1 of the account for MD5
//     ("md5") and SHA-256 ("sha-256"), hex, computed over
//     USER:DOMAIN:PASSWORD (the realm is the domain). The password itself
//     is never stored.
//   - users:DOMAIN is the index of the domain's accounts: one entry per
//     user, for `voicering user ls`.
//   - aor:sip:USER@DOMAIN holds the bindings: one entry per contact (named
//     by its +sip.instance when the UA sends one, else by its URI),
//     expiring when the REGISTER said.
//
// Who may write them: anyone the ring admits. In a closed ring (a ring CA)
// that is the holders of a certificate the CA issued, peers and clients;
// in an open ring, or the demo, it is whoever can reach a peer, which is
// why the demo listens on loopback only. The records are readable the same
// way: by ring members and admitted clients, never by SIP users.
//
// # Digest authentication
//
// REGISTER is challenged (401) with two WWW-Authenticate headers, SHA-256
// first and MD5 second (RFC 8760), both qop=auth. Nonces are stateless:
// a timestamp, the nonce's index and the issuer's id, sealed with an
// HMAC-SHA-256 under the peer's secret (Config.NonceSecret, random per
// peer by default), so only the issuing peer (or peers given the same
// secret) accepts them, and they expire after Config.NonceTTL (then the
// peer answers 401 stale=true and the UA retries silently). Replays are
// refused by nonce-count tracking: a peer remembers the highest nc it
// accepted with each of the last 2^20 nonces it issued, in a table slot
// named by the nonce's index, and refuses any nc not above it; an older
// nonce is answered stale. (A flood of first REGISTERs, each challenged,
// can push a phone's nonce out of the table early: it costs that phone
// one more challenge.) Another peer's nonces, under a shared secret, have
// their counts kept in a map until they expire.
// Wrong credentials get 403, missing ones 401; a user may register only
// their own address of record.
//
// # REGISTER over UDP
//
// REGISTERs over UDP do not go through sipgo's transaction layer. The
// server reads the UDP socket first (udpFront): REGISTER datagrams go to a
// pool of workers (package workers), which parse them in parallel and
// answer each one themselves; every other datagram goes on to sipgo.
// Retransmissions still make one transaction (RFC 3261 §17.2.2). A
// REGISTER with credentials that arrives again while the first is at the
// ring is dropped. One arriving after the answer gets the same answer
// again, byte for byte, from a table that keeps final answers for 32–64 s
// (at most 2 × 100,000 of them). A REGISTER without credentials is simply
// challenged again. REGISTERs over TCP and TLS go through sipgo.
//
// A REGISTER in the plain form phones send is answered from its own bytes
// (scanRegister, rawRegister.appendAnswer): the answer copies its Via,
// From, To, Call-ID and CSeq lines, filling in rport and received and
// adding a To tag, instead of building and rendering a sipgo response. A
// first REGISTER, without credentials, is challenged from the scan alone
// and never parsed. What the scan does not accept (folded or repeated
// headers it reads, a body, Require, a Via it cannot read as sipgo does)
// takes the parser and the registrar's checks; FuzzScanRegister holds the
// two readings together.
//
// Requests the proxy sends over UDP leave from the SIP port, the address
// phones registered from and send to. Their NAT bindings and firewalls
// then let in calls and NOTIFYs from it.
//
// # Routing
//
// An INVITE for a user of the domain is proxied statefully to every
// binding at once (parallel forking), with Record-Route so that in-dialog
// requests (ACK, BYE, re-INVITE) come back through the same peer.
// Provisional and final answers are relayed; the first 2xx cancels the
// other branches; a CANCEL from the caller cancels them all. When no
// contact is bound, every contact is busy or unavailable, or nobody answers
// within Config.RingTimeout, the call goes to the Voicemail.
//
// # Voicemail
//
// With Config.VM set, the peer answers such calls itself (media: package
// media): greeting (the owner's recorded one, else the embedded prompt),
// beep, then the caller's audio is piped, as a WAV whose header sizes are
// media.UnknownSize, into Objects.Put while the caller speaks, in 16 KiB
// segments (about a second), so at hang-up only the last segment and the
// manifest remain to be placed. A recording ends at BYE, '#',
// VoicemailConfig.MaxLength or Silence (no RTP, or RMS under 200, for
// that long); one shorter than MinLength is removed and not listed.
//
// The same bytes go to VoicemailConfig.Spool, on the peer's own disk
// (spool.go): a deposit the ring did not take when the call ended (its
// recording or its mailbox entry) is tried again, backing off from a
// second to RetryEvery, also after a restart, with its message ID and
// entry version fixed at the first try, so a repeat neither doubles the
// message nor undoes a save or delete made in between.
//
// Owners call sip:voicemail@DOMAIN (digest-challenged like REGISTER): "you
// have N new and M saved messages", then each message newest first,
// streamed from the ring as its first segment arrives, and the menu: 1
// replay, 7 delete, 9 save, # next, 0 record a new greeting (offered
// again after the last message, so an empty mailbox can have one; the
// greeting it replaces is removed from the ring). SUBSCRIBE
// with Event: message-summary (RFC 3842, digest-authenticated) is stored
// in the record mwi:AOR; the peer that changes a mailbox (deposit, save,
// delete) NOTIFYs every live subscription in it. A mailbox changed
// outside SIP (`voicering vm rm`) is announced through the ring call
// MethodNotifyMailbox, which ringpeer registers on SIP peers with
// voicemail.
//
// Mailbox records (mailbox:AOR, one entry per message plus "greeting")
// are sealed with XChaCha20-Poly1305 under the ring's voicemail key,
// bound to the mailbox and entry name. Trust model: whoever holds the
// key and can reach the ring reads every mailbox and therefore, through
// the caps in it, every recording: the ring's SIP peers, and operators
// running `voicering vm ls/get/rm`. Peers that only store records, shards
// or manifests never need the key and see ciphertext, not callers or
// caps; owners hear only their own mailbox after digest authentication.
// mwi:AOR entries are not sealed: they hold the subscriber's contact, as
// bindings do.
//
// # Key provisioning
//
// Every SIP peer of a ring must hold the same key (VoicemailConfig.Key),
// or a message left through one peer cannot be listed through another
// (Mailboxes.Read counts such entries as Unreadable). Create it once
// (`voicering vm key init --out FILE`: 32 random bytes, hex, mode 0600;
// ringpeer.CreateKey), copy it to every SIP peer like the ring CA, and
// start each with `voicering node --sip ... --vm-key FILE`. A peer given
// no key makes its own in its data directory (ringpeer.VoicemailKey) and
// warns at start; `voicering demo` keeps one key for all its peers in its
// data directory, reused on restart. Changing the key makes the messages
// sealed under the old one unreadable: there is no rotation yet.
package sipvm
