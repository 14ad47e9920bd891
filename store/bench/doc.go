// Package bench measures how a voicering ring reads under peer loss, so
// that choosing a redundancy scheme — Reed–Solomon coding or plain
// replication — rests on figures from real processes rather than on
// arithmetic.
//
// # Method
//
// Run starts a ring of Config.Peers separate `voicering node` processes on
// 127.0.0.1 (the binary is Config.Binary, by default the running
// executable), each with its own data directory and port, and talks to it
// as a non-member peer.Client does. It waits until the ring is usable:
// every peer listens, every peer's ID is found by lookups in ring order,
// and a tiny put succeeds.
//
// For each scheme compared — the coding scheme Config.Scheme, then R-way
// replication (coding.Scheme{Needed: 1, Total: R}, the same code path) at
// the same storage overhead ⌈total/needed⌉ and at R = 3 — it stores the
// same workload (Config.Workload: by default 200 voicemail-sized objects of
// 480 kB and 4 of 64 MiB, random bytes drawn from Config.Seed) and runs
// rounds f = 0, 1, …, tolerated+1. Each round first waits until the ring
// is whole (every peer back, every segment of every object holding all its
// shards, as Objects.Stat sees it) and then idle (on Linux, the peers
// together under 0.15 cores of CPU over a second, so the repair set off by
// the last restart is over), notes which peers hold the shards of each
// object, kills f peers chosen from the seed with SIGKILL and fetches
// every object through the client, one at a time, checking its bytes.
// The fetch starts at once after the kill, so it meets what a reader would:
// lookups that still name the dead peers, and the repair they set off. It records the
// success rate, the p50 and p99 latency of each size class, the throughput
// and the shard bytes received relative to object bytes (the read
// amplification of asking every placement peer and keeping the first
// needed). It also counts the objects that actually lost a shard holder
// and those expected to be unreadable (some segment kept fewer than needed
// shards), so a success rate can be checked against what was lost. The
// killed peers are then restarted with their data and address.
//
// For the coding scheme it also measures:
//
//   - the long tail: one peer restarted with --answer-delay (200 ms by
//     default) delays every store answer; it is switched between slow and
//     healthy (SIGUSR1, SIGUSR2) for three alternating passes over the
//     workload each, and the p99 of the slow passes is compared with that
//     of the healthy ones, all on the same processes;
//   - throughput of one large object (256 MiB by default) beside the raw
//     throughput of a TLS 1.3 connection over 127.0.0.1 copying the same
//     bytes in the same run, the ceiling any loopback transport has;
//   - repair time: one peer is killed for good, and the time from the kill
//     until Stat finds every segment of every object whole again.
//
// Every peer process is owned by Run: it is killed and waited for before
// Run returns, whether it succeeds, fails or its context is cancelled (and,
// on Linux, the kernel kills the peers if the benchmark process dies).
//
// The results are written to Config.Dir as report.md (Markdown tables),
// results.csv and success_p99.png (success rate and p99 latency against
// peers lost, one line per scheme).
//
// Latencies measured this way include everything a reader pays on one
// machine: lookups, TLS, decoding, decryption, and the CPU the peers and
// the client share. On a small machine they measure the store and the
// machine together; compare runs of the same machine.
package bench
