// Package sipvm is the SIP face of a voicering peer: a registrar, a
// stateful forking proxy and (in a later issue) the voicemail service.
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
// a timestamp and random bytes, sealed with an HMAC-SHA-256 under the
// peer's secret (Config.NonceSecret, random per peer by default), so only
// the issuing peer accepts them and they expire after Config.NonceTTL
// (then the peer answers 401 stale=true and the UA retries silently).
// Replays are refused by nonce-count tracking: a peer remembers, per
// nonce, the highest nc it accepted, and refuses any nc not above it.
// Wrong credentials get 403, missing ones 401; a user may register only
// their own address of record.
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
package sipvm
