#!/usr/bin/env bash
# REGISTER with digest auth: a 4-peer voicering ring (R = 3 binding
# replicas; peers are testdata/bench/ringnode, `voicering node --sip` with
# the MD5 challenge first, as sipp 3.6 needs) against Kamailio 5.6 as a plain in-memory registrar, driven by
# the same sipp scenario at a fixed rate ladder.
#
#   testdata/bench/register-vs-kamailio.sh            # from the repository
#   USERS=200 LOAD_USERS=20 RATES="800 1600 2400 3200 4000 4800 6000 8000 12000" DURATION=20 testdata/bench/register-vs-kamailio.sh
#
# To compare ceilings, offer rates until both targets fail: the summary
# says when a target kept up at every rate (its ceiling is above them).
#
# Each registration is two REGISTER transactions (401 challenge, then the
# authenticated REGISTER answered 200). sipp 3.6 takes the digest user and
# password only from -au/-ap, so one sipp process drives one user:
# LOAD_USERS processes (of the USERS accounts created) share the rate.
# Before the ladder, one registration against each target must succeed,
# else the script stops and shows sipp's output.
#
# TARGETS="voicering" (or "kamailio") runs one target only; default both.
# TARGETS may also name kamailio-dmq: three Kamailio registrars that
# replicate every binding to one another (dmq_usrloc), so that each is
# held three times, as on the ring (R = 3); sipp spread over the three.
# It is a like-for-like reading beside the plain anchor, not the anchor.
# MAX_REGISTRATIONS=N sets the peers' --max-registrations (-1: no limit).
# NO_SIP_WRITES=1 runs the peers with -no-sip-writes: REGISTER's binding
# writes are acknowledged without reaching the ring, which measures the
# SIP front alone (the ring's floor), not a registrar.
# MEMORY_RECORDS=1 builds ringnode with the tag voicering_memrecords: the
# peers' stores keep soft-state record entries (the bindings) in memory,
# not in badger, so the replica writes cost their messages only. That
# measures what badger adds; such a peer forgets every binding when it
# stops (store/local/memrecords.go).
# PPROF_BASE=PORT serves net/http/pprof of peer i at 127.0.0.1:PORT+i
# (ringnode -pprof), to profile a run; off by default.
#
# Output: a Markdown table on stdout and in $OUT/results.md, with sipp's
# raw files beside it. $OUT defaults to bench-out/register-vs-kamailio-DATE.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
USERS=${USERS:-200}
LOAD_USERS=${LOAD_USERS:-20}
RATES=${RATES:-100 200 400 800}
DURATION=${DURATION:-20}
BASE=${BASE:-26000}            # ports BASE.. are used on 127.0.0.1
KAM_CHILDREN=${KAM_CHILDREN:-4}
# MiB of shared memory for each kamailio-dmq registrar: DMQ keeps a
# transaction per replicated binding, and 256 ran out at 3,000/s.
KDMQ_SHM=${KDMQ_SHM:-1024}
DOMAIN=bench.test
OUT=${OUT:-$ROOT/bench-out/register-vs-kamailio-$(date +%Y%m%d-%H%M%S)}

need() { # need CMD PACKAGE: install Debian's PACKAGE when CMD is missing
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  fi
  command -v "$1" >/dev/null || { echo "register-vs-kamailio: $1 missing: install Debian's $2" >&2; exit 1; }
}
need sipp sip-tester
need kamailio kamailio
need go golang-go

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "== output in $OUT" >&2
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "== build voicering" >&2
(cd "$ROOT" && go build -o "$OUT/voicering" ./cmd/voicering && go build ${MEMORY_RECORDS:+-tags voicering_memrecords} -o "$OUT/ringnode" ./testdata/bench/ringnode)
VR=$OUT/voicering

# --- the voicering ring -------------------------------------------------
echo "== start 4 voicering peers" >&2
NODE_PIDS=()
SIP_ADDRS=()
for i in 0 1 2 3; do
  ring=127.0.0.1:$((BASE + 100 + i))
  sipaddr=127.0.0.1:$((BASE + 10 * i))
  join=()
  [ "$i" -gt 0 ] && join=(-join "127.0.0.1:$((BASE + 100))")
  [ -n "${PPROF_BASE:-}" ] && join+=(-pprof "127.0.0.1:$((PPROF_BASE + i))")
  [ -n "${MAX_REGISTRATIONS:-}" ] && join+=(-max-registrations "$MAX_REGISTRATIONS")
  [ -n "${NO_SIP_WRITES:-}" ] && join+=(-no-sip-writes)
  # ringnode is `voicering node --sip` offering MD5 first (see its doc):
  # sipp 3.6 cannot answer the SHA-256 challenge voicering node offers first.
  "$OUT/ringnode" -data "$OUT/node$i" -listen "$ring" "${join[@]}" -sip "$sipaddr" -domain "$DOMAIN" 2>"$OUT/node$i.log" &
  PIDS+=($!); NODE_PIDS+=($!); SIP_ADDRS+=("$sipaddr")
done

echo "== add $USERS users" >&2
add_user() { # retries while the ring settles
  for _ in $(seq 60); do
    "$VR" user add --peer "127.0.0.1:$((BASE + 100 + $1 % 4))" --domain "$DOMAIN" --password "pw-$2" "$2" >/dev/null 2>>"$OUT/user-add.log" && return 0
    sleep 0.5
  done
  echo "register-vs-kamailio: could not add user $2 (see $OUT/user-add.log)" >&2; return 1
}
add_user 0 u0
export -f add_user; export VR OUT BASE DOMAIN
seq 1 $((USERS - 1)) | xargs -P 4 -I{} bash -c 'add_user {} u{}'
# Users added while the new ring still settled may sit on a replica set
# that lookups no longer name until hand-off moves them (seconds).
for _ in $(seq 60); do
  got=$("$VR" user ls --peer "127.0.0.1:$((BASE + 100))" --domain "$DOMAIN" | wc -l)
  [ "$got" -ge "$USERS" ] && break
  sleep 0.5
done
[ "$got" -ge "$USERS" ] || { echo "register-vs-kamailio: the ring lists $got users after 30 s, want $USERS" >&2; exit 1; }

# --- Kamailio ----------------------------------------------------------------
echo "== start Kamailio" >&2
DB=$OUT/kamailio-db
mkdir -p "$DB"
printf 'id(int,auto) table_name(string) table_version(int) \n1:subscriber:7\n' >"$DB/version"
{
  echo 'id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) '
  for n in $(seq 0 $((USERS - 1))); do
    ha1=$(printf '%s' "u$n:$DOMAIN:pw-u$n" | md5sum | cut -d' ' -f1)
    echo "$((n + 1)):u$n:$DOMAIN:pw-u$n:$ha1:$ha1"
  done
} >"$DB/subscriber"
# kamailio_at ADDR SHM LOG [-A ...]: a registrar on ADDR with SHM MiB of
# shared memory, in the background (its pid in $!).
kamailio_at() {
  local addr=$1 shm=$2 log=$3; shift 3
  kamailio -f "$ROOT/testdata/kamailio/kamailio.cfg" -DD -E -m "$shm" -M 16 \
    -l "udp:$addr" -n "$KAM_CHILDREN" -A "DBURL=\"text://$DB\"" -A "DOMAIN=$DOMAIN" "$@" 2>"$log" &
}
KAM_ADDR=127.0.0.1:$((BASE + 50))
kamailio_at "$KAM_ADDR" 256 "$OUT/kamailio.log"
KAM_PID=$!
PIDS+=("$KAM_PID")
KDMQ_ADDRS=()
KDMQ_PIDS=()
if [[ " ${TARGETS:-} " == *" kamailio-dmq "* ]]; then
  echo "== start 3 Kamailio registrars replicating over DMQ" >&2
  for i in 0 1 2; do
    a=127.0.0.1:$((BASE + 60 + i))
    kamailio_at "$a" "$KDMQ_SHM" "$OUT/kamailio-dmq$i.log" \
      -A "DMQ_SELF=\"sip:$a\"" -A "DMQ_NOTIFY=\"sip:127.0.0.1:$((BASE + 60))\""
    PIDS+=($!); KDMQ_PIDS+=($!); KDMQ_ADDRS+=("$a")
  done
fi

# --- load ---------------------------------------------------------------------
cpu_ticks() { # utime+stime of the processes given and their children
  local t=0 p
  for p in "$@" $(for q in "$@"; do ps -o pid= --ppid "$q" 2>/dev/null; done); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

# run TARGET RATE: LOAD_USERS sipp processes, user j against address j.
# Prints: registrations/s, failed %, p99 ms, cpu %, sipp's cpu %.
run() {
  local name=$1 rate=$2; shift 2
  local dir=$OUT/$name-$rate addrs=("$@") per=$((rate / LOAD_USERS)) sp=()
  [ "$per" -ge 1 ] || { echo "rate $rate below one call/s per sipp process" >&2; exit 1; }
  mkdir -p "$dir"
  local cpu0 pids
  case $name in
  voicering) pids=("${NODE_PIDS[@]}") ;;
  kamailio-dmq) pids=("${KDMQ_PIDS[@]}") ;;
  *) pids=("$KAM_PID") ;;
  esac
  cpu0=$(cpu_ticks "${pids[@]}")
  local t0; t0=$(date +%s.%N)
  for j in $(seq 0 $((LOAD_USERS - 1))); do
    printf 'SEQUENTIAL\nu%d;%s\n' "$j" "$DOMAIN" >"$dir/user$j.csv"
    (cd "$dir" && exec sipp -i 127.0.0.1 -p $((BASE + 200 + j)) -nostdin -sf "$ROOT/testdata/bench/register-rtd.xml" \
      -inf "$dir/user$j.csv" -au "u$j" -ap "pw-u$j" -r "$per" -m $((per * DURATION)) -l $((per * 5)) \
      -recv_timeout 5s -timeout $((DURATION + 20))s -max_recv_loops 1000 \
      -trace_stat -stf "$dir/stat$j.csv" -fd 1 -trace_rtt -rtt_freq 50 -trace_err -error_file "$dir/err$j.log" \
      "${addrs[$((j % ${#addrs[@]}))]}" >"$dir/sipp$j.out" 2>&1) &
    sp+=($!)
  done
  for p in "${sp[@]}"; do wait "$p" || true; done
  local t1; t1=$(date +%s.%N)
  local cpu1; cpu1=$(cpu_ticks "${pids[@]}")
  # CPU of the sipp processes (this subshell's waited children), from times.
  local sipp_s
  times >"$dir/times" # in this shell: a subshell has no children of its own
  sipp_s=$(awk 'NR==2{n=split($0,a," "); t=0; for(i=1;i<=n;i++){split(a[i],b,/[ms]/); t+=b[1]*60+b[2]}; print t}' "$dir/times")
  # Totals from each process's last statistics line.
  local ok=0 bad=0 f
  for f in "$dir"/stat*.csv; do
    read -r s e < <(awk -F';' 'NR==1{for(i=1;i<=NF;i++){if($i=="SuccessfulCall(C)")s=i;if($i=="FailedCall(C)")e=i}} NR>1{a=$s;b=$e} END{print a+0, b+0}' "$f")
    ok=$((ok + s)); bad=$((bad + e))
  done
  local p99
  p99=$(cat "$dir"/*_rtt.csv 2>/dev/null | awk -F';' '$2 ~ /^[0-9.]+$/ {print $2}' | sort -n |
    awk '{v[NR]=$1} END{if(NR==0){print "n/a"; exit}; i=int(NR*0.99); if(i<1)i=1; if(v[i]<1){print "<1"; exit}; printf "%.0f", v[i]}')
  awk -v ok="$ok" -v bad="$bad" -v t0="$t0" -v t1="$t1" -v p99="$p99" -v c0="$cpu0" -v c1="$cpu1" -v hz="$HZ" -v ss="$sipp_s" -v want=$((per * LOAD_USERS * DURATION)) \
    'BEGIN{tot=ok+bad; miss=want-tot; if(miss<0)miss=0; fail=(want>0)?100*(bad+miss)/want:0; el=t1-t0;
      printf "%.1f %.2f %s %.0f %.0f\n", ok/el, fail, p99, 100*(c1-c0)/hz/el, 100*ss/el}'
}

# Wait until each target answers an authenticated REGISTER (one sipp call).
check() {
  local name=$1 addr=$2 dir=$OUT/check-$1
  mkdir -p "$dir"; printf 'SEQUENTIAL\nu0;%s\n' "$DOMAIN" >"$dir/u.csv"
  for _ in $(seq 10); do
    (cd "$dir" && sipp -i 127.0.0.1 -p $((BASE + 199)) -nostdin -sf "$ROOT/testdata/bench/register-rtd.xml" -inf "$dir/u.csv" \
      -au u0 -ap pw-u0 -m 1 -recv_timeout 3s -timeout 10s "$addr" >"$dir/sipp.out" 2>&1) && return 0
    sleep 1
  done
  echo "register-vs-kamailio: sipp cannot register u0 at $name ($addr); see $dir/sipp.out" >&2
  tail -20 "$dir/sipp.out" >&2
  exit 1
}
check voicering "${SIP_ADDRS[0]}"
check kamailio "$KAM_ADDR"
[ ${#KDMQ_ADDRS[@]} -gt 0 ] && check kamailio-dmq "${KDMQ_ADDRS[0]}"

RES=$OUT/results.md
{
  echo "REGISTER with digest (401 then 200 per registration), sipp 3.6, $LOAD_USERS sipp processes (one user each) of $USERS accounts, ${DURATION}s per rate."
  [ -n "${MEMORY_RECORDS:-}" ] && echo "**MEMORY_RECORDS: the peers keep bindings in memory, not in badger (the replica writes' messages without the store).**"
  [ -n "${NO_SIP_WRITES:-}" ] && echo "**NO_SIP_WRITES: the peers acknowledge binding writes without making them (the SIP front alone, not a registrar).**"
  echo "voicering: 4 peers (testdata/bench/ringnode: \`voicering node --sip\` offering MD5 first, R = 3), sipp spread over the 4 SIP addresses. Kamailio $(kamailio -v | awk 'NR==1{print $2, $3}'): usrloc db_mode=0, auth_db on db_text, $KAM_CHILDREN UDP children.${KDMQ_ADDRS[0]:+ Kamailio-DMQ: three such registrars replicating every binding to the other two over DMQ (dmq_usrloc), sipp spread over the three, $KDMQ_SHM MiB of shared memory each.}"
  echo "p99: first REGISTER sent to 200 received (two round trips), in sipp's whole milliseconds. CPU: % of one core, all processes of the target; CPU µs/reg: the target's CPU time per registration achieved (what each costs, whatever the rate); sipp CPU: the same for the sipp processes driving it ($(nproc) cores in all)."
  echo
  echo "| target | offered reg/s | achieved reg/s | failed % | p99 ms | CPU % | CPU µs/reg | sipp CPU % |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$RES"
declare -A BEST SATURATED
for rate in $RATES; do
  for target in ${TARGETS:-voicering kamailio}; do
    case $target in
    voicering) addrs=("${SIP_ADDRS[@]}") ;;
    kamailio-dmq) addrs=("${KDMQ_ADDRS[@]}") ;;
    *) addrs=("$KAM_ADDR") ;;
    esac
    echo "== $target at $rate/s for ${DURATION}s" >&2
    read -r got fail p99 cpu scpu < <(run "$target" "$rate" "${addrs[@]}")
    us=$(awk -v c="$cpu" -v g="$got" 'BEGIN{if(g>0)printf "%.0f", c*10000/g; else print "n/a"}')
    echo "| $target | $rate | $got | $fail | $p99 | $cpu | $us | $scpu |" >>"$RES"
    if awk -v f="$fail" 'BEGIN{exit !(f < 1)}'; then BEST[$target]=$got; else SATURATED[$target]=1; fi
  done
done
{
  echo
  v=${BEST[voicering]:-0}; k=${BEST[kamailio]:-0}
  # ratio A B: A/B, n/a when B is 0 or voicering was not a target.
  ratio() { awk -v a="$1" -v b="$2" -v ran="$([[ " ${TARGETS:-voicering} " == *" voicering "* ]] && echo 1)" \
    'BEGIN{if(b>0 && ran)printf "%.2f", a/b; else print "n/a"}'; }
  ratio=$(ratio "$v" "$k")
  echo "Highest achieved rate with < 1% failures: voicering $v reg/s, Kamailio $k reg/s; ratio voicering/Kamailio $ratio."
  if [ ${#KDMQ_ADDRS[@]} -gt 0 ]; then
    d=${BEST[kamailio-dmq]:-0}
    echo "Kamailio-DMQ (3 registrars, every binding on all three) $d reg/s; ratio voicering/Kamailio-DMQ $(ratio "$v" "$d")."
  fi
  for t in ${TARGETS:-voicering kamailio}; do
    [ -n "${SATURATED[$t]:-}" ] || echo "$t kept up at every rate offered: its ceiling lies above the ladder (offer higher RATES to find it)."
  done
  echo
  echo "Command: ${TARGETS:+TARGETS=\"$TARGETS\" }${MEMORY_RECORDS:+MEMORY_RECORDS=1 }${NO_SIP_WRITES:+NO_SIP_WRITES=1 }USERS=$USERS LOAD_USERS=$LOAD_USERS RATES=\"$RATES\" DURATION=$DURATION testdata/bench/register-vs-kamailio.sh ($(nproc) cores, $(uname -r))"
} >>"$RES"
cat "$RES"
