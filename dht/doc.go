// Package dht is the ring voicering stores its data on: peer identity,
// Chord-style ring maintenance, iterative lookup, and the mutually
// authenticated transport every layer (shards, records, SIP) calls other
// peers over. It knows nothing of what is stored.
//
// # Identity
//
// A peer's identity is an Ed25519 key kept in its data directory
// (LoadIdentity; KeyFile, mode 0600). Its node ID is the SHA-256 of the
// public key, a point on the 256-bit ring; keys (Key) are SHA-256 of typed
// names such as "aor:sip:alice@example.org". Every connection is TLS 1.3
// with certificates on both sides carrying the Ed25519 keys, so a node ID
// is always proved, never claimed: the caller checks that the peer it
// reached is the node ID a lookup named (ErrPeerID otherwise), the server
// derives the caller's ID from its certificate (Request.From), and a
// certificate whose subject names an ID other than its key's is refused.
//
// In an open ring certificates are self-signed and anyone may join. A
// closed ring has a CA (NewCA, CreateCA, CA.Issue: the `voicering ca`
// verbs): peers configured with its certificate (TLSConfig.CA) admit only
// peers whose certificate it issued, and refuse to talk to uncertified
// servers, which keeps an attacker from joining with chosen node IDs (the
// Sybil attack). Clients that are not peers (`voicering put`) use the
// same transport without a listen address: in an open ring with a
// throwaway key (NewIdentity), in a closed ring with a key the CA issued
// a certificate for, exactly like a peer's. Methods that must be limited
// to peers can check Request.From against the ring.
//
// # Transport and messages
//
// Calls travel over that TLS, one connection per peer pair multiplexing
// every concurrent call (TLSTransport). Peers of this version speak a
// framed protocol ("voicering/1", chosen in the TLS handshake by ALPN):
// each call is a request frame (call ID, protocol version, method, body)
// answered by a response frame (status, body), and a cancel frame ends
// the handler's context when the caller gives up. A side writes every
// frame queued while it writes in one TLS record and system call, so under
// load many calls share them; messages over 64 KiB go in chunks between
// which small frames are written, so a 1 MiB shard delays a keep-alive by
// one chunk at most. A peer that offers only HTTP/2 (an older voicering)
// is called with HTTP/2 POSTs, the method in the path and the version in a
// header, and a caller that offers only HTTP/2 is served that way: a ring
// upgrades one peer at a time. The framed protocol costs a quarter of the
// CPU of HTTP/2 per small call (BenchmarkCall). Either way status codes
// carry the error classes; a peer serves every protocol version it knows
// and answers others with 505 and the list it speaks, which the caller
// turns into a retry in the newest common version or ErrVersion. Bodies
// are bounded (DefaultMaxMessage, 8 MiB); a malformed body gets 400
// (ErrBadRequest at the caller), never a crash. Upper layers register
// their own methods on a Node (Handle) and call them with Node.Call;
// transports count payload bytes per peer (Meter).
//
// Ring messages use a small binary encoding: fixed 32-byte IDs, uvarint
// lengths, a flags byte. It is compact (control traffic is what a large
// ring pays for continuously), trivially bounded and fuzzed, and
// versionable: decoders ignore trailing bytes, so a later version may
// append fields, and incompatible changes take a new protocol version.
//
// # Ring
//
// Node runs Chord with successor lists (default 16 entries, longer than
// the widest coding scheme): a key's successors are its replica or
// placement set (Lookup(ctx, key, n)), and when a peer dies the next query
// reaches its former neighbours. Periodic stabilize asks the first live
// successor for its predecessor and list (walking back over peers that
// joined in between) and notifies it; fix-fingers refreshes one finger
// per period, filling the fingers that fall within the successor list
// without a call; keep-alives ping the predecessor and first successors
// not heard from. A graceful Leave tells the predecessor and successor,
// which splice at once, and for 2 s count nothing they still hear from
// the leaver as a sign of life (answers to calls made before it left
// would otherwise put it back); upper layers watch Subscribe for changes of the
// neighbourhood to repair and hand over data. A periodic merge looks the
// node's own ID up through the bootstrap peers, a finger, and peers lost
// to failures, which reunites rings split by a partition.
//
// Lookups are iterative: the asker starts from the known peers closest
// before the key, each asked peer answers with the key's successors (if
// it holds them in its successor list) or with closer peers, and the
// asker keeps going. One request is in flight at a time, up to Alpha
// (default 3) when a response brings closer peers while others are
// pending or a request is slower than its peer's timeout, so dead and
// slow peers are routed around without tripling traffic. The lookup is a
// function of a caller and starting contacts, so Client runs the same
// algorithm from a bootstrap address without joining. A recursive mode
// would add one method and leave the API as is.
//
// The failure detector keeps an RTT estimate per peer as TCP does
// (srtt + 4·rttvar, within MinTimeout..MaxTimeout, doubled after each
// failure). A peer that fails a call is suspected (routed around, still
// probed); after DeadAfter consecutive failures it is dead and dropped
// from every table, and ignored when others still list it for DeadMemory
// unless it calls in itself. Joins, rejoins and retries of lost peers
// back off exponentially with full jitter (Backoff: a random wait below
// 0.5 s doubling to 5 min), and the first join waits a random fraction of
// the first step, so a mass restart spreads out instead of storming.
//
// A restarted peer keeps its ID and address, so peers that still list it
// from its previous run call it before it has joined. Until it joins it
// therefore answers no lookups (askers route around it) and takes a
// notifying peer only as its predecessor: that peer lists it, so the join
// looks up through it first, and its notify cuts the join back-off short.
// (Answering "I am alone", or taking the notifier as successor, sent
// joining peers a successor half a ring away, from which stabilize walks
// back eight peers a round.) Only when join attempts reach no peer at all
// three times in a row does a node answer as the first peer of a ring, so
// a whole ring restarting at once comes back. With Config.PeerCache the
// node keeps the addresses of its neighbours and fingers in a file
// (rewritten atomically when they change and on stopping) and joins
// through them beside Bootstrap after a restart.
//
// # Figures
//
// Simulated on dht/memnet in virtual time (testing/synctest), default
// periods, 5–25 ms one-way delay, every lookup checked against the true
// ring (all correct):
//
//	go test ./dht/dhttest -run Sim -v -sim.sizes=32,128,1000
//
//	N      hops mean  p99   ½·log2 N
//	32     0.49       1     2.50
//	128    1.51       3     3.50
//	1000   2.95       6     4.98
//
// Hops count rounds of requests after the asker's own table; the
// successor list answers most of the last steps. Killing half the ring at
// once and restarting every killed peer within 10 s (the 2007 Skype
// outage; -sim.window sets the window):
//
//	go test ./dht/dhttest -run TestSimMassRestart -v -sim.sizes=N
//
//	N      reconverged after     control bytes/peer/s
//	       the last restart      steady  peak (×)     after
//	128    12 s                  1093    1715 (1.6)   1363
//	400    13 s                  1352    2533 (1.9)   1715
//	1000   20 s                  1517    2416 (1.6)   2114
//
// Control traffic is payload bytes sent per live peer per second;
// "after" is the 30 s once reconverged, above steady state while failure
// memory and lost-peer retries fade. With restarts spread over a minute
// (-sim.window=1m) N = 1000 reconverged 12 s after the last restart
// (measured before the join wake-up and the far-successor lookup). The
// remaining tail is successor-list propagation (a restarted peer reaches
// its 16th predecessor's list one stabilize round per peer) and peers
// whose join was answered from a stale view, which a lookup of their own
// ID from the far successor corrects once walking back runs long.
package dht
