#!/bin/sh
# vm-deposits.sh — concurrent voicemail deposits one SIP peer sustains.
#
# Starts a ring of $PEERS (6) `voicering node` processes on 127.0.0.1 (one with
# --sip), then for each concurrency N in $LEVELS has sipp place N calls
# at once (-l N) to a user with no binding; each call waits out the
# greeting and beep, streams 10 s of the test speech as PCMU RTP
# (testdata/sipp/voicemail.xml, speech.pcmu looped twice) and hangs up.
# Per level it reports: calls sipp completed, messages stored, how many
# of them hold every RTP payload byte sent (their WAV samples equal the
# sent mu-law decoded, compared with sox), and the SIP peer's CPU
# (utime+stime from /proc/PID/stat) over the level, as cores busy and as
# concurrent deposits per core.
#
# Needs: go, sipp (Debian's sip-tester), sox. Run from anywhere:
#   testdata/bench/vm-deposits.sh                 # LEVELS="25 50 100 200"
#   LEVELS="100 250 400" testdata/bench/vm-deposits.sh
# A deposit the ring does not take when the call ends is spooled on the
# SIP peer and stored by its retries (backing off to every 30 s): the "spooled" column
# counts them ($WORK/peer-0.log: "spooled, will retry" and why), and the
# level waits (up to 180 s) for the spool to empty.
# Output: a table on stdout; logs and WAVs under $WORK (kept; printed).
# The SIP peer logs at info ($WORK/peer-0.log): "voicemail: deposited"
# per message, "spooled, will retry" or "deposit lost" with the reason,
# "spooled deposit stored", "recording too short".
set -eu

ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
LEVELS=${LEVELS:-"25 50 100 200"}
RAMP=${RAMP:-5}            # seconds over which a level's calls start
PEERS=${PEERS:-6}          # ring size; peer 0 serves SIP
TICK=${TICK:-}             # e.g. 200ms: the demo's fast ring periods (--tick); default: a node's own
WORK=${WORK:-$(mktemp -d /tmp/vm-deposits.XXXXXX)}
DOMAIN=bench.local
HZ=$(getconf CLK_TCK)

for tool in go sipp sox; do
	command -v "$tool" >/dev/null || { echo "vm-deposits.sh needs $tool" >&2; exit 1; }
done
BIN=$WORK/voicering
(cd "$ROOT" && go build -o "$BIN" ./cmd/voicering)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The caller's audio: 10 s, and what the stored WAV must hold.
cp "$ROOT/testdata/audio/speech.pcmu" "$WORK/speech.pcmu"
sox -t ul -r 8000 -c 1 "$WORK/speech.pcmu" -t raw -e signed -b 16 -L "$WORK/one.raw"
cat "$WORK/one.raw" "$WORK/one.raw" > "$WORK/expected.raw"
sed 's/speech.pcmu,1,0/speech.pcmu,2,0/' "$ROOT/testdata/sipp/voicemail.xml" > "$WORK/voicemail10.xml"

# The ring: peer 0 serves SIP with a shared voicemail key.
"$BIN" vm key init --out "$WORK/vm.key" >/dev/null
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
SIP=127.0.0.1:$(free_port)
FIRST=""
for i in $(seq 0 $((PEERS - 1))); do
	addr=127.0.0.1:$(free_port)
	set -- node --data "$WORK/peer-$i" --listen "$addr"
	[ -n "$TICK" ] && set -- "$@" --tick "$TICK"
	if [ "$i" = 0 ]; then set -- "$@" --log-level info; else set -- "$@" --log-level warn; fi
	[ -n "$FIRST" ] && set -- "$@" --join "$FIRST"
	[ "$i" = 0 ] && set -- "$@" --sip "$SIP" --domain "$DOMAIN" --vm-key "$WORK/vm.key"
	"$BIN" "$@" >"$WORK/peer-$i.log" 2>&1 &
	PIDS="$PIDS $!"
	[ "$i" = 0 ] && { SIPPID=$!; FIRST=$addr; }
	sleep 1
done
PEER=$FIRST
echo "ring: $PEERS peers, SIP peer pid $SIPPID on $SIP, work dir $WORK" >&2

# wait_ring waits (up to 120 s) until the SIP peer lists every other
# peer as a successor and suspects none: a level must not start on a
# ring still forming, where a put finds too few live peers.
wait_ring() {
	w=0
	while [ "$w" -lt 120 ]; do
		st=$("$BIN" ring --peer "$PEER" 2>/dev/null || true)
		if [ "$(echo "$st" | grep -c '^successor')" -ge $((PEERS - 1)) ] && ! echo "$st" | grep -q '^suspected'; then
			return 0
		fi
		sleep 1; w=$((w + 1))
	done
	echo "the ring did not settle in 120 s:" >&2; echo "$st" >&2
}

cpu() { awk '{print $14+$15}' "/proc/$SIPPID/stat"; }

spooled_so_far() { grep -c 'spooled, will retry' "$WORK/peer-0.log" || true; }
spool_empty() { ! ls "$WORK/peer-0/voicemail-spool/"*.json >/dev/null 2>&1; }

printf '%-6s %-6s %-7s %-8s %-9s %-8s %-8s %-10s\n' N calls stored spooled complete cpu_s cores per_core
for N in $LEVELS; do
	user=u$N
	until "$BIN" user add --peer "$PEER" --domain "$DOMAIN" --password x "$user" >/dev/null 2>&1; do sleep 1; done
	wait_ring
	c0=$(cpu); t0=$(date +%s.%N); sp0=$(spooled_so_far)
	rate=$(( (N + RAMP - 1) / RAMP ))
	(cd "$WORK" && sipp -i 127.0.0.1 -p "$(free_port)" -nostdin -sf "$WORK/voicemail10.xml" -s "$user" -set domain "$DOMAIN" \
		-d 10500 -l "$N" -m "$N" -r "$rate" -rp 1000 -timeout 120s -max_recv_loops 10000 -max_sched_loops 10000 \
		-trace_stat -stf "$WORK/sipp-$N.csv" -trace_err -error_file "$WORK/sipp-$N-errors.log" \
		"$SIP" >"$WORK/sipp-$N.out" 2>&1) || true
	c1=$(cpu); t1=$(date +%s.%N)
	calls=$(grep 'Successful call' "$WORK/sipp-$N.out" 2>/dev/null | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
	# Messages are stored after each BYE (the last segment, the manifest,
	# the mailbox entry), or later from the spool: list until the count
	# holds for 5 s with the spool empty (180 s at most).
	stored=-1; same=0; waited=0
	while { [ "$same" -lt 5 ] || ! spool_empty; } && [ "$waited" -lt 180 ]; do
		"$BIN" vm ls --peer "$PEER" --domain "$DOMAIN" --vm-key "$WORK/vm.key" --json "$user" > "$WORK/ls-$N.json" 2>>"$WORK/ls-$N.log" || true
		n=$(grep -c '"id"' "$WORK/ls-$N.json" || true)
		if [ "$n" = "$stored" ]; then same=$((same + 1)); else same=0; stored=$n; fi
		[ "$stored" = "${calls:-}" ] && break
		sleep 1; waited=$((waited + 1))
	done
	spooled=$(( $(spooled_so_far) - sp0 ))
	complete=0
	mkdir -p "$WORK/wav-$N"
	for id in $(sed -n 's/.*"id": "\(.*\)".*/\1/p' "$WORK/ls-$N.json"); do
		w=$WORK/wav-$N/$id.wav
		"$BIN" vm get --peer "$PEER" --domain "$DOMAIN" --vm-key "$WORK/vm.key" -q -o "$w" "$user" "$id" 2>>"$WORK/get-$N.log" || continue
		tail -c +45 "$w" | cmp -s - "$WORK/expected.raw" && complete=$((complete + 1))
	done
	awk -v n="$N" -v calls="${calls:-?}" -v stored="$stored" -v spooled="$spooled" -v complete="$complete" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN {
		cpu = (c1 - c0) / hz; cores = cpu / (t1 - t0)
		printf "%-6d %-6s %-7d %-8d %-9d %-8.1f %-8.2f %-10.0f\n", n, calls, stored, spooled, complete, cpu, cores, (cores > 0 ? n / cores : 0)
	}'
done
