#!/usr/bin/env bash
# Lab throughput benchmark for BENCHMARKS.md (the throughput issue's lab
# scenarios c, d, e, g), kept out of CI. Root only: it builds its own NAT
# lab (shared/lab netlab.sh) under its own namespace prefix.
#
# Usage: scripts/bench-lab.sh [SCENARIOS (default "c d e g")] [RUNS (default 3)]
#
# Every scenario runs in one lab, `--nat-a full-cone --nat-b none` plus the
# scenario's impairment, so that every contender crosses the same links:
# peerA (10.1.0.10 behind natA, public 198.51.100.2, ports preserved) sends
# to peerB (203.0.113.70, no NAT). MSS 1500 for everyone (UDT -m 1500 /
# p2pcat's default; TCP -M 1460 = 1500-byte packets).
#   c  --a-rate 100mbit --a-delay 25 --a-loss 0.5 --b-delay 25 --b-loss 0.5
#      p2pcat (default: tokens, punching, encrypted), p2pcat --cc udt,
#      libudt (udtpeer -r -> udtpeer -r, receiver first), TCP BBR, TCP CUBIC
#      (iperf3, server in peerB bound to 203.0.113.70)
#   d  --a-rate 300mbit --a-delay 25 --a-loss 0.05 --b-delay 25 --b-loss 0.05
#      the same contenders
#   e  --a-rate 100mbit --a-delay 25 --b-delay 25 --a-queue 100, no random
#      loss: p2pcat alone, libudt alone, then p2pcat with one TCP flow
#      (CUBIC, then BBR) started as soon as p2pcat is connected, for
#      FIXED_SECS each; each flow's Mbit/s, retransmissions and share
#   g  the link of c: p2pcat --raw -> udtpeer -r, udtpeer -r -> p2pcat --raw,
#      udtpeer -r -> udtpeer -r; byte-exact checks
#   i  not one of the issue's: the lab suite's impaired uplinks (30 and 40 ms
#      ± 5 ms, 3 % loss each way, no rate limit); p2pcat only, to hunt slow
#      outliers (e.g. SIZE_MIB=16 WHOLE=p2pcat scripts/bench-lab.sh i 20)
#
# The receiver always starts first (libudt's sender crawls when its peer
# has not connected yet). The sender's input is a FIFO fed from its
# "connected" line on. Whole-size contenders (WHOLE, default "p2pcat
# p2pcat>libudt") get SIZE_MIB of random data (a file in $WORK), and the
# receiver's output must match its SHA-256. The others are slow (libudt at
# ~20 Mbit/s would need 400+ s for 1 GiB): they get the same file for
# FIXED_SECS, then EOF, and their output must be an exact prefix of the
# file (cmp). They also show "first N s": what had arrived when the
# input ended / N; the main figure includes draining the sender's buffer.
# In e the input is the file over and over, unchecked. TCP: iperf3 -t
# TCP_SECS (e: FIXED_SECS, from p2pcat's "connected" line on).
#
# Figures: goodput in Mbit/s (10^6 bit/s; MB = 10^6 bytes) = bytes the
# receiver got / the receiver's own time from connection (p2pcat: after
# the key exchange) to the last byte, as `p2pcat -v` and udtpeer print
# it; for TCP iperf3's receiver figure. "wall" = bytes / (sender process
# start -> receiver exit): includes STUN, punching, the handshakes and the
# close. CPU = user+sys seconds of each whole process (bash `times`, the
# process tree under `timeout` + `ip netns exec`). Retransmissions: p2pcat
# = (payload bytes the sender put on the wire - new payload bytes the
# receiver got) / sent, from `-v` (the sender also runs with
# P2PCAT_TRACE=1, whose "sent N retx M" lines agree and stay in
# $WORK/snd.log, each run's copied to $WORK/res_SCENARIO_CONTENDER.runN.snd.log,
# and iperf3's JSON beside p2pcat to .runN.tcp.json;
# --raw prints neither, so "?"); libudt = retrans/sent from
# udtpeer's perfmon totals; TCP = iperf3 retransmits / (bytes sent / 1448).
# Runs alternate the contenders' order; medians over RUNS; each scenario
# ends with a table (medians, ratios to the issue's anchors and to the
# other contenders of the same run, the goals) and the commands used.
#
# Exit status 1 if any run failed or was not byte-exact (goals missed do
# not count: they are printed as PASS/FAIL).
#
# Environment:
#   P2PCAT_LAB_DIR     built copy of shared/lab (default: copy + make into $WORK/lab)
#   P2PCAT_INTEROP_BIN dir with udtpeer (default: copy + make shared/interop)
#   NETLAB_PREFIX      namespace prefix (default p2bench-; never the test suite's p2lab-)
#   NETLAB_RUN         lab state dir (default /run/netlab-p2bench)
#   SIZE_MIB (1024)  FIXED_SECS (60)  TCP_SECS (= FIXED_SECS)
#   WHOLE ("p2pcat p2pcat>libudt")  WHOLE_LIMIT (300: a whole-size contender
#     still sending after this many seconds gets EOF there, and is reported
#     as cut, with the rate and the prefix check of what it moved)
#   CONTENDERS_c, CONTENDERS_d, CONTENDERS_e, CONTENDERS_g: override a
#     scenario's list (names as in the tables; e also knows tcp-cubic, tcp-bbr)
#   WORK (/dev/shm/p2pcat-bench-lab)
#   P2P_BASE=REV       build p2pcat at git revision REV as a second contender,
#     "base" (also "base+cubic", "base+bbr" in e), for an interleaved A/B
#     of a change against REV in the same run: e.g.
#     P2P_BASE=HEAD~1 CONTENDERS_e="p2pcat base p2pcat+cubic base+cubic" \
#       scripts/bench-lab.sh e 3       (in c and d add it to WHOLE too)
# The machine should be otherwise idle: on 2 cores the two linkemu
# processes, both peers and (in d) encryption at 300 Mbit/s compete.
set -euo pipefail
exec </dev/null

root=$(cd "$(dirname "$0")/.." && pwd)
scenarios=${1:-"c d e g"}
runs=${2:-3}
size_mib=${SIZE_MIB:-1024}
fixed=${FIXED_SECS:-60}
tcp_secs=${TCP_SECS:-$fixed}
whole=" ${WHOLE:-p2pcat p2pcat>libudt} "
whole_limit=${WHOLE_LIMIT:-300}
work=${WORK:-/dev/shm/p2pcat-bench-lab}
export NETLAB_PREFIX=${NETLAB_PREFIX:-p2bench-}
export NETLAB_RUN=${NETLAB_RUN:-/run/netlab-p2bench}
PFX=$NETLAB_PREFIX

die() { echo "bench-lab: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
case $PFX in p2lab-|'') die "NETLAB_PREFIX=\"$PFX\" is not ours: use a prefix of this benchmark's own (default p2bench-)" ;; esac
[ "$NETLAB_RUN" != /run/netlab-p2lab ] && [ "$NETLAB_RUN" != /run/netlab ] ||
  die "NETLAB_RUN=$NETLAB_RUN is not ours (default /run/netlab-p2bench)"
for s in $scenarios; do case $s in c | d | e | g | i) ;; *) die "unknown scenario \"$s\": want c, d, e, g, i" ;; esac; done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"

# ---- scenarios: lab flags, contenders, the issue's anchors --------------------
declare -A FLAGS CONT ANCHOR RATE
FLAGS[c]="--a-rate 100mbit --a-delay 25 --a-loss 0.5 --b-delay 25 --b-loss 0.5"
FLAGS[d]="--a-rate 300mbit --a-delay 25 --a-loss 0.05 --b-delay 25 --b-loss 0.05"
FLAGS[e]="--a-rate 100mbit --a-delay 25 --b-delay 25 --a-queue 100"
FLAGS[g]=${FLAGS[c]}
# i: not the issue's; the lab suite's impaired uplinks (test/lab: TestPunchMatrix impaired)
FLAGS[i]="--a-delay 30 --a-jitter 5 --a-loss 3 --b-delay 40 --b-jitter 5 --b-loss 3"
RATE[c]=100 RATE[d]=300 RATE[e]=100 RATE[g]=100 RATE[i]=0
CONT[c]=${CONTENDERS_c:-"p2pcat p2pcat-udt libudt tcp-bbr tcp-cubic"}
CONT[d]=${CONTENDERS_d:-"p2pcat p2pcat-udt libudt tcp-bbr tcp-cubic"}
CONT[e]=${CONTENDERS_e:-"p2pcat libudt p2pcat+cubic p2pcat+bbr"}
CONT[g]=${CONTENDERS_g:-"p2pcat>libudt libudt>p2pcat libudt>libudt"}
CONT[i]=${CONTENDERS_i:-"p2pcat"}
# the issue's anchors, Mbit/s ("lo-hi" for a range)
ANCHOR[c:libudt]=16-23 ANCHOR[c:tcp-cubic]=1.7 ANCHOR[c:tcp-bbr]=84
ANCHOR[d:libudt]=68 ANCHOR[d:tcp-cubic]=8 ANCHOR[d:tcp-bbr]=130
ANCHOR[e:libudt]=44
ANCHOR[c:p2pcat]=">= 90" ANCHOR[d:p2pcat]=">= 255" ANCHOR[e:p2pcat]=">= 95, retx < 1 %"

for s in $scenarios; do
  for c in ${CONT[$s]}; do
    case $c in
      p2pcat | p2pcat-udt | libudt | tcp-bbr | tcp-cubic | p2pcat+cubic | p2pcat+bbr | 'p2pcat>libudt' | 'libudt>p2pcat' | 'libudt>libudt') ;;
      base | base+cubic | base+bbr) [ -n "${P2P_BASE:-}" ] || die "contender \"$c\" needs P2P_BASE=REV (a git revision to build)" ;;
      *) die "unknown contender \"$c\" in scenario $s" ;;
    esac
  done
done

for t in iperf3 jq ip cmp sha256sum timeout; do command -v $t >/dev/null || die "$t is not installed"; done
mkdir -p "$work"

# ---- tools -----------------------------------------------------------------
# shellcheck source=scripts/bench-tools.sh
. "$root/scripts/bench-tools.sh"
if [ -n "${P2PCAT_LAB_DIR:-}" ]; then
  LAB=$P2PCAT_LAB_DIR
else
  echo "building the lab from $root/../shared/lab ..."
  rm -rf "$work/lab"
  cp -R "$root/../shared/lab" "$work/lab"
  chmod -R u+w "$work/lab"
  make -s -C "$work/lab" >/dev/null
  LAB=$work/lab
fi
[ -x "$LAB/netlab.sh" ] && [ -x "$LAB/bin/linkemu" ] || die "no built lab at $LAB (cp -r shared/lab DIR && make -C DIR)"
export NETLAB_BIN=$LAB/bin

src=$work/src_${size_mib}M.bin
bytes=$((size_mib * 1048576))
if [ ! -s "$src" ] || [ "$(stat -c %s "$src")" -ne $bytes ]; then
  echo "writing $size_mib MiB of random data to $src ..."
  head -c $bytes /dev/urandom >"$src"
fi
want=$(sha256sum <"$src" | cut -d' ' -f1)
out=$work/out.bin

printf 'machine: %s cores, %s, load average at start %s\n' "$(nproc)" "$(uname -r)" "$load0"
printf 'p2pcat %s (%s), udtpeer on libudt %s, %s, host TCP default %s\n' \
  "$(cd "$root" && git describe --always --dirty 2>/dev/null || echo '?')" "$(go version | cut -d' ' -f3)" \
  "$(dpkg-query -W -f '${Version}' libudt0 2>/dev/null || echo '?')" "$(iperf3 --version | head -1 | cut -d' ' -f1-2)" \
  "$(sysctl -n net.ipv4.tcp_congestion_control)"
[ -z "$P2P_BASE_BIN" ] || echo "base: p2pcat $base_rev (P2P_BASE=$P2P_BASE)"
echo "$load0" | awk '$1 > 0.5 { print "warning: load average " $1 " at start: other work is running, the numbers will be noisy" }'
ls /run/netns 2>/dev/null | grep -v "^$PFX" | grep -q . &&
  echo "warning: other network namespaces exist ($(ls /run/netns | grep -v "^$PFX" | tr '\n' ' ')): another lab may be loading the machine"
wl=${whole# }
echo "command: $0 \"$scenarios\" $runs  (SIZE_MIB=$size_mib FIXED_SECS=$fixed TCP_SECS=$tcp_secs WHOLE=\"${wl% }\" WHOLE_LIMIT=$whole_limit)"

# ---- lab and processes -------------------------------------------------------
netlab() { "$LAB/netlab.sh" "$@"; }
nsname() { echo "$PFX$1"; }
lab_is_up() { [ -e "/run/netns/${PFX}inet" ] || [ -d "$NETLAB_RUN" ]; }

# kill_leftovers: every process still inside our peer namespaces (only
# ours run there: p2pcat, udtpeer, iperf3), by pid; then our own
# background jobs (feeders, wrappers) of this shell.
kill_leftovers() {
  local ns pids=() p
  for ns in peerA peerB; do
    [ -e "/run/netns/$PFX$ns" ] || continue
    pids+=($(ip netns pids "$PFX$ns" 2>/dev/null || true))
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    sleep 0.5
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
  fi
  pids=($(jobs -pr))
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  kill_leftovers
  if lab_is_up; then
    echo "tearing the lab down ($PFX*) ..."
    netlab down --force >/dev/null 2>&1 || echo "bench-lab: warning: netlab down failed; run NETLAB_PREFIX=$PFX NETLAB_RUN=$NETLAB_RUN $LAB/netlab.sh down --force" >&2
  fi
  rm -f "$out" "$work/feed"
  exit $rc
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

lab_up() {
  if lab_is_up; then netlab down --force >/dev/null 2>&1 || true; fi
  local log=$work/netlab-up.log
  netlab up "$@" >"$log" 2>&1 || {
    sed 's/^/  /' "$log" | tail -20
    die "netlab up $* failed"
  }
  # shellcheck disable=SC1090
  . "$NETLAB_RUN/addrs"
  PUB_A=$WAN_A    # full cone, ports preserved: peerA's port P is $WAN_A:P
  PUB_B=$PEER_B_IP # no NAT: 203.0.113.70
}

# ---- helpers ---------------------------------------------------------------
now() { date +%s.%N; }
# timed FILE CMD...: runs CMD in a subshell and writes its user+sys CPU
# seconds (children's times from bash `times`) to FILE.
timed() {
  local f=$1
  shift
  (
    rc=0
    "$@" || rc=$?
    times >"$f.raw" # a builtin, in this shell: a pipe would fork and lose the children's times
    sed -n 2p "$f.raw" | awk '{
      split($1, u, /[ms]/); split($2, s, /[ms]/)
      printf "%.2f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' >"$f"
    exit $rc
  )
}
# wait_for FILE ERE SECS: until FILE has a line matching ERE (status 1 on timeout).
wait_for() {
  local i n=$(($3 * 10))
  for ((i = 0; i < n; i++)); do
    grep -Eq -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
median() { sort -n | awk '{a[NR]=$1} END {if (!NR) print "?"; else printf "%.2f\n", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# vals FILE KEY: the numeric values of KEY=... in FILE's records
vals() { [ -f "$1" ] && sed -n "s/.* $2=\([-0-9.][0-9.e+-]*\)\( .*\)\{0,1\}$/\1/p" "$1" || true; }
med() { vals "$1" "$2" | median; }
list() { vals "$1" "$2" | tr '\n' ' ' | sed 's/ $//'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "?" && b > 0) printf "%.2f", a / b; else print "?" }'; }
mbit() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.2f", b * 8 / s / 1e6; else print "?" }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", 100 * a / b; else print "?" }'; }
cpu() { cat "$1" 2>/dev/null || echo '?'; }
cmdline() { printf '%q ' "$@" | sed 's/ $//'; }

port=$((20000 + RANDOM % 20000))
tport=$((5300 + RANDOM % 500))
status=0
STUN=192.0.2.10:3478
NTP=192.0.2.10

# args_for IMPL ROLE PA PB: sets argv to the command line of IMPL (p2pcat,
# p2pcat-udt, p2pcat-raw, base, udtpeer) for ROLE (send in peerA, recv in peerB).
args_for() {
  local impl=$1 role=$2 pa=$3 pb=$4 me peer lp tok bin=$P2P
  [ "$impl" = base ] && bin=$P2P_BASE_BIN
  if [ "$role" = send ]; then me=a peer=b lp=$pa tok=$PUB_B:$pb; else me=b peer=a lp=$pb tok=$PUB_A:$pa; fi
  case $impl in
    p2pcat | p2pcat-udt | base)
      argv=("$bin" "$role" -v --stun "$STUN" --ntp "$NTP" --slot 0 --localport "$lp"
        --me "$work/$me.tok" "@$work/$peer.tok")
      [ "$impl" = p2pcat-udt ] && argv+=(--cc udt)
      ;;
    p2pcat-raw) argv=("$P2P" "$role" --raw -v --stun "$STUN" --ntp "$NTP" --slot 0 --localport "$lp" "$tok") ;;
    udtpeer) argv=("$UDTPEER" "$role" -r -m 1500 -l "$lp" -c "$tok") ;;
  esac
  if [ "${impl%%-*}" = p2pcat ] || [ "$impl" = base ]; then argv=(env P2PCAT_TRACE="${P2PCAT_TRACE:-1}" "${argv[@]}"); fi
}

# tcp_start CC SECS: starts an iperf3 server in peerB (bound to its public
# address, one test) and the client in peerA; sets tcp_spid, tcp_cpid
# and tcp_cmd.
tcp_start() {
  local cc=$1 secs=$2 lim=$(($2 + 60))
  tcp_cc=$cc
  tport=$((tport + 1))
  local srv=(iperf3 -s -1 -B "$PUB_B" -p "$tport")
  local cli=(iperf3 -c "$PUB_B" -p "$tport" -t "$secs" -C "$cc" -M 1460 -J)
  rm -f "$work"/tcp.*
  timed "$work/tcp.srv.cpu" timeout "$lim" ip netns exec "$(nsname peerB)" "${srv[@]}" >"$work/tcp.srv.log" 2>&1 &
  tcp_spid=$!
  local i
  for ((i = 0; i < 50; i++)); do
    ip netns exec "$(nsname peerB)" ss -Hltn "sport = :$tport" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  timed "$work/tcp.cli.cpu" timeout "$lim" ip netns exec "$(nsname peerA)" "${cli[@]}" >"$work/tcp.json" 2>"$work/tcp.cli.err" &
  tcp_cpid=$!
  tcp_cmd="B: ip netns exec ${PFX}peerB $(cmdline "${srv[@]}")"$'\n'"A: ip netns exec ${PFX}peerA $(cmdline "${cli[@]}")"
}

# tcp_result: waits for the iperf3 pair, sets tcp_rec (key=value figures)
# and tcp_line (human-readable).
tcp_result() {
  wait "$tcp_cpid" || true
  wait "$tcp_spid" || true
  local j=$work/tcp.json err rcvbps rb rs sb retx cong
  err=$(jq -r '.error // empty' "$j" 2>/dev/null || echo "no JSON from iperf3")
  rcvbps=$(jq -r '.end.sum_received.bits_per_second // empty' "$j" 2>/dev/null || true)
  if [ -n "$err" ] || [ -z "$rcvbps" ]; then
    tcp_line="FAILED: ${err:-no result} $(tail -2 "$work/tcp.cli.err" 2>/dev/null | tr '\n' ' ')"
    tcp_rec=" tmbps=? ok=0"
    status=1
    return
  fi
  rb=$(jq -r '.end.sum_received.bytes' "$j")
  rs=$(jq -r '.end.sum_received.seconds' "$j")
  sb=$(jq -r '.end.sum_sent.bytes' "$j")
  retx=$(jq -r '.end.sum_sent.retransmits // 0' "$j")
  cong=$(jq -r '.end.sender_tcp_congestion // "?"' "$j")
  local mb retxp
  if [ "$cong" != "$tcp_cc" ]; then
    cong+=" (NOT the requested $tcp_cc)"
    status=1
  fi
  mb=$(awk -v b="$rcvbps" 'BEGIN { printf "%.2f", b / 1e6 }')
  retxp=$(awk -v r="$retx" -v b="$sb" 'BEGIN { if (b > 0) printf "%.2f", 100 * r * 1448 / b; else print "?" }')
  tcp_rec=" tmbps=$mb tbytes=$rb tsecs=$rs tretx=$retxp tretxn=$retx tccpu=$(cpu "$work/tcp.cli.cpu") tscpu=$(cpu "$work/tcp.srv.cpu") ok=1"
  tcp_line=$(printf '%7s Mbit/s  %d B in %.1f s  retx %s segs (%s %%)  cc %s  CPU client %ss server %ss' \
    "$mb" "$rb" "$rs" "$retx" "$retxp" "$cong" "$(cpu "$work/tcp.cli.cpu")" "$(cpu "$work/tcp.srv.cpu")")
}

# xfer SENDER RECEIVER MODE [TCPCC]: one UDT transfer peerA -> peerB.
# MODE: whole (the file), fixed (the file for FIXED_SECS, then EOF), loop
# (the file repeated for FIXED_SECS, output unchecked). TCPCC: also run
# an iperf3 flow with that congestion control from the moment the sender
# is connected. Sets rec (key=value figures), line, cmd.
xfer() {
  local simpl=$1 rimpl=$2 mode=$3 tcpcc=${4:-} pa pb lim t0 t1 spid rpid fpid
  port=$((port + 2))
  pa=$port pb=$((port + 1))
  rm -f "$out" "$work"/*.tok "$work"/snd.* "$work"/rcv.* "$work/feed" "$work/at_fixed"
  args_for "$rimpl" recv "$pa" "$pb"
  local rcv=("${argv[@]}")
  args_for "$simpl" send "$pa" "$pb"
  local snd=("${argv[@]}")
  cmd="B: ip netns exec ${PFX}peerB $(cmdline "${rcv[@]}") > out"$'\n'"A: ip netns exec ${PFX}peerA $(cmdline "${snd[@]}")"
  local rout=$out connre='connected (to|in) '
  case $mode in
    whole) lim=$((whole_limit + 180)) cmd+=" < <(cat src, started at the sender's connected line, cut at $whole_limit s)  (SIZE_MIB=$size_mib of random data)" ;;
    fixed) lim=$((fixed + 180)) cmd+=" < <(timeout $fixed cat src, started at the sender's connected line)" ;;
    loop) lim=$((fixed + 180)) rout=/dev/null cmd+=" < <(timeout $fixed: src repeated, started at the sender's connected line)" ;;
  esac

  # The receiver first (libudt's sender crawls when its peer is not
  # connected yet), then the sender once the receiver is under way.
  timed "$work/rcv.cpu" timeout "$lim" ip netns exec "$(nsname peerB)" "${rcv[@]}" >"$rout" 2>"$work/rcv.log" &
  rpid=$!
  if ! wait_for "$work/rcv.log" 'tell your peer|rendezvous to ' 15; then
    echo "    (the receiver printed no start line within 15 s)"
  fi
  case $rimpl in udtpeer | p2pcat-raw) sleep 1 ;; esac # its handshakes run into the closed NAT first, as in the wild

  # The input goes through a FIFO, from the sender's "connected" line on:
  # the file (whole: cut at WHOLE_LIMIT s, which only a slow contender
  # reaches; fixed: cut at FIXED_SECS), or the file over and over (loop).
  t0=$(now)
  mkfifo "$work/feed"
  timed "$work/snd.cpu" timeout "$lim" ip netns exec "$(nsname peerA)" "${snd[@]}" <"$work/feed" 2>"$work/snd.log" &
  spid=$!
  (
    exec >"$work/feed"
    wait_for "$work/snd.log" "$connre" 60 || exit 0
    if [ "$mode" = loop ]; then
      exec timeout "$fixed" sh -c 'while cat "$1"; do :; done' sh "$src"
    fi
    frc=0
    timeout "$([ "$mode" = whole ] && echo "$whole_limit" || echo "$fixed")" cat "$src" || frc=$?
    exec >&- # EOF for the sender
    # the output's size at that moment, unless the file ran out first
    [ $frc != 124 ] || stat -c %s "$out" >"$work/at_fixed" || true
  ) 2>/dev/null &
  fpid=$!
  if [ -n "$tcpcc" ]; then
    if wait_for "$work/snd.log" "$connre" 60; then
      tcp_start "$tcpcc" "$fixed"
    else
      tcp_cpid='' tcp_spid=''
    fi
  fi
  local srv=0 rrv=0
  wait "$spid" || srv=$?
  wait "$rpid" || rrv=$?
  t1=$(now)
  [ -n "${fpid:-}" ] && { kill "$fpid" 2>/dev/null || true; wait "$fpid" 2>/dev/null || true; }
  rm -f "$work/feed"

  # What the receiver got, and in how long (its own clock: connection to
  # the last byte).
  local n secs
  read -r n secs < <(sed -n 's/.*received \([0-9][0-9]*\) bytes in \([0-9.][0-9.]*\) \{0,1\}s.*/\1 \2/p' "$work/rcv.log" | tail -1) || true
  if [ -z "${n:-}" ]; then
    n=0 secs=0
    [ "$rout" != /dev/null ] && [ -f "$out" ] && n=$(stat -c %s "$out")
  fi
  local ok=OK okv=1
  if [ $srv -ne 0 ] || [ $rrv -ne 0 ]; then
    ok="FAILED (sender exit $srv, receiver exit $rrv)"
    okv=0
  fi
  local check="output not checked"
  if [ "$mode" != loop ]; then
    local got
    got=$(stat -c %s "$out" 2>/dev/null || echo 0)
    if [ "$got" != "$n" ]; then
      check="MISMATCH (output $got bytes, receiver says $n)"
    elif [ "$n" -eq "$bytes" ]; then
      if [ "$(sha256sum <"$out" | cut -d' ' -f1)" = "$want" ]; then check="sha256 OK"; else check="sha256 MISMATCH"; fi
    elif [ "$mode" = whole ] && [ ! -f "$work/at_fixed" ]; then
      check="SHORT ($n of $bytes bytes)"
    elif [ "$n" -gt 0 ] && cmp -s -n "$n" "$out" "$src"; then
      check="exact prefix of the file"
      [ "$mode" = whole ] && check+=" (too slow for the whole file: input cut at WHOLE_LIMIT=$whole_limit s)"
    else
      check="prefix MISMATCH"
    fi
    case $check in *OK | exact*) ;; *) okv=0 ;; esac
  fi
  [ "$mode" = fixed ] && [ "$n" -eq "$bytes" ] && check+=" (the whole file: raise SIZE_MIB for a full ${fixed} s)"
  [ $okv = 1 ] || status=1

  # Retransmissions of the sender.
  local retx=? sl=$work/snd.log rl=$work/rcv.log
  case $simpl in
    p2pcat | p2pcat-udt | base)
      local w r
      w=$(sed -n 's/.*sent [0-9]* bytes in .*; \([0-9][0-9]*\) bytes on the wire.*/\1/p' "$sl" | tail -1)
      r=$(sed -n 's/.*received [0-9]* bytes in .*; \([0-9][0-9]*\) bytes on the wire.*/\1/p' "$rl" | tail -1)
      [ -n "$w" ] && [ -n "$r" ] && retx=$(pct "$((w - r))" "$w")
      ;;
    p2pcat-raw)
      retx=$(awk '/p2pcat: trace/ { for (i = 1; i < NF; i++) { if ($i == "sent") s += $(i + 1); if ($i == "retx") r += $(i + 1) } }
        END { if (s > 0) printf "%.2f", 100 * r / s; else print "?" }' "$sl")
      ;;
    udtpeer)
      local tot
      tot=$(sed -n 's/.*total sent=\([0-9]*\) .*retrans=\([0-9]*\) .*/\1 \2/p' "$sl" | tail -1)
      [ -n "$tot" ] && retx=$(pct "${tot#* }" "${tot% *}")
      ;;
  esac
  local mb wall
  mb=$(mbit "$n" "$secs")
  wall=$(awk -v b="$n" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.2f", b * 8 / (z - a) / 1e6 }')
  # fixed: what had arrived when the input ended (FIXED_SECS after connecting)
  local win=? winl=
  if [ "$mode" = fixed ] && [ -s "$work/at_fixed" ]; then
    win=$(mbit "$(cat "$work/at_fixed")" "$fixed")
    winl="  (first ${fixed} s: $win Mbit/s)"
  fi
  rec=" mbps=$mb wall=$wall bytes=$n secs=$secs retx=$retx scpu=$(cpu "$work/snd.cpu") rcpu=$(cpu "$work/rcv.cpu") win=$win ok=$okv"
  line=$(printf '%7s Mbit/s  %d B in %s s%s  wall %s Mbit/s  retx %s %%  CPU sender %ss receiver %ss  %s, %s' \
    "$mb" "$n" "$secs" "$winl" "$wall" "$retx" "$(cpu "$work/snd.cpu")" "$(cpu "$work/rcv.cpu")" "$ok" "$check")
  if [ $okv = 0 ]; then
    line+=$'\n'"      receiver: $(tail -3 "$rl" | tr '\n' '|')"$'\n'"      sender: $(grep -v 'p2pcat: trace' "$sl" | tail -3 | tr '\n' '|')"
  fi
  if [ -n "$tcpcc" ]; then
    if [ -n "$tcp_cpid" ]; then
      tcp_result
      cmd+=$'\n'"and from the sender's connected line on, for $fixed s:"$'\n'"$tcp_cmd"
    else
      tcp_line="not started (the UDT sender never connected)" tcp_rec=" tmbps=? ok=0"
      status=1
    fi
  fi
  kill_leftovers
}

# ---- runs ------------------------------------------------------------------
# cpu_ticks: the host's CPU steal and total ticks so far (/proc/stat). On a
# virtual machine the hypervisor's steal (the vCPUs waiting for the host)
# delays every process, the link emulator's too: the RTT rises and the
# sender falls behind its pacing, so runs are only comparable at like
# steal.
cpu_ticks() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat 2>/dev/null || echo "0 0"; }

# one SCENARIO CONTENDER RUN
one() {
  local s=$1 c=$2 i=$3 res=$work/res_${1}_${2//[>+]/_} mode
  local label ticks0
  label=$(printf '%s run %d %-14s' "$s" "$i" "$c")
  ticks0=$(cpu_ticks)
  case $c in
    tcp-bbr | tcp-cubic)
      tcp_start "${c#tcp-}" "$tcp_secs"
      cmd=$tcp_cmd
      tcp_result
      kill_leftovers
      echo "  $label $tcp_line"
      echo "$tcp_rec" | sed 's/ tmbps=/ mbps=/; s/ tretx=/ retx=/' >>"$res"
      ;;
    p2pcat+cubic | p2pcat+bbr | base+cubic | base+bbr)
      xfer "${c%+*}" "${c%+*}" loop "${c#*+}"
      echo "  $label ${c%+*} $line"
      echo "  $(printf '%*s' ${#label} '') TCP    $tcp_line"
      local share
      share=$(awk -v a="${rec#* mbps=}" -v b="${tcp_rec#* tmbps=}" 'BEGIN { a += 0; b += 0; if (a + b > 0) printf "%.3f", a / (a + b); else print "?" }')
      echo "  $(printf '%*s' ${#label} '') p2pcat share of the two: $share"
      echo "$rec$tcp_rec share=$share" >>"$res"
      cp "$work/snd.log" "$res.run$i.snd.log" 2>/dev/null || true
      cp "$work/tcp.json" "$res.run$i.tcp.json" 2>/dev/null || true
      ;;
    *)
      mode=fixed
      [ "$s" = e ] && mode=loop
      case " ${whole} " in *" $c "*) [ "$s" != e ] && mode=whole ;; esac
      case $c in
        p2pcat | p2pcat-udt | base) xfer "$c" "$c" "$mode" ;;
        libudt | 'libudt>libudt') xfer udtpeer udtpeer "$mode" ;;
        'p2pcat>libudt') xfer p2pcat-raw udtpeer "$mode" ;;
        'libudt>p2pcat') xfer udtpeer p2pcat-raw "$mode" ;;
        *) die "unknown contender $c" ;;
      esac
      echo "  $label $line"
      echo "$rec mode=$mode" >>"$res"
      # Each run's logs stay for a look at the traces.
      cp "$work/snd.log" "$res.run$i.snd.log" 2>/dev/null || true
      cp "$work/rcv.log" "$res.run$i.rcv.log" 2>/dev/null || true
      ;;
  esac
  echo "  $(printf '%*s' ${#label} '') host CPU steal $(echo "$ticks0 $(cpu_ticks)" | awk '{ d = $4 - $2; printf "%.1f", (d > 0 ? 100 * ($3 - $1) / d : 0) }') % over the run"
  [ -s "$res.cmd" ] || echo "$cmd" >"$res.cmd"
}

# anchor_cmp MEDIAN ANCHOR: "x.xx" or "lo..hi" ratio to a numeric anchor
anchor_cmp() {
  local m=$1 a=$2
  case $a in
    '' | '>'*) echo "" ;;
    *-*) echo "$(ratio "$m" "${a#*-}")..$(ratio "$m" "${a%-*}")x" ;;
    *) echo "$(ratio "$m" "$a")x" ;;
  esac
}

verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "?" && a + 0 >= b + 0) }'; then echo PASS; else echo FAIL; fi; }

summary() {
  local s=$1 c res m
  local sum=$work/summary_$s.txt
  {
    echo
    echo "== summary $s: lab ${FLAGS[$s]} --nat-a full-cone --nat-b none; $runs run(s); SIZE_MIB=$size_mib FIXED_SECS=$fixed TCP_SECS=$tcp_secs"
    printf '  %-14s %9s  %-28s %9s %8s %8s %7s  %s\n' contender "Mbit/s" "runs" "wall" "CPU snd" "CPU rcv" "retx%" "anchor (Mbit/s) / ratio"
    for c in ${CONT[$s]}; do
      res=$work/res_${s}_${c//[>+]/_}
      m=$(med "$res" mbps)
      local an=${ANCHOR[$s:$c]:-} cpus cpur
      cpus=$(med "$res" scpu) cpur=$(med "$res" rcpu)
      local wall
      wall=$(med "$res" wall)
      case $c in tcp-*) cpus=$(med "$res" tccpu) cpur=$(med "$res" tscpu) wall=- ;; esac
      printf '  %-14s %9s  %-28s %9s %8s %8s %7s  %s\n' "$c" "$m" "$(list "$res" mbps)" "$wall" \
        "$cpus" "$cpur" "$(med "$res" retx)" "${an:+$an $(anchor_cmp "$m" "$an")}"
      [ -n "$(vals "$res" win)" ] &&
        printf '  %-14s %9s  %-28s (bytes that had arrived when the %s s of input ended / %s s)\n' "  first ${fixed} s" "$(med "$res" win)" "$(list "$res" win)" "$fixed" "$fixed"
      case $c in *+cubic | *+bbr)
        printf '  %-14s %9s  %-28s %9s %8s %8s %7s  share of %s %s (runs %s), of the link: %s %s TCP %s\n' \
          "  TCP ${c#*+}" "$(med "$res" tmbps)" "$(list "$res" tmbps)" - "$(med "$res" tccpu)" "$(med "$res" tscpu)" \
          "$(med "$res" tretx)" "${c%+*}" "$(med "$res" share)" "$(list "$res" share)" \
          "${c%+*}" "$(ratio "$m" "${RATE[$s]}")" "$(ratio "$(med "$res" tmbps)" "${RATE[$s]}")"
        ;;
      esac
    done
    local p=$work/res_${s}_p2pcat pm
    pm=$(med "$p" mbps)
    case $s in
      c | d)
        for c in ${CONT[$s]}; do
          [ "$c" = p2pcat ] && continue
          printf '  p2pcat / %-14s %sx (medians of the same run)\n' "$c" "$(ratio "$pm" "$(med "$work/res_${s}_${c//[>+]/_}" mbps)")"
        done
        local goal=90
        [ "$s" = d ] && goal=255
        if [ -f "$p" ]; then echo "  goal p2pcat >= $goal Mbit/s: $(verdict "$pm" $goal) (median $pm)"; fi
        ;;
      e)
        local rx
        rx=$(med "$p" retx)
        if [ -f "$p" ]; then
          echo "  goal p2pcat alone >= 95 Mbit/s: $(verdict "$pm" 95) (median $pm); retransmissions < 1 %: $(awk -v r="$rx" 'BEGIN { print (r != "?" && r + 0 < 1) ? "PASS" : "FAIL" }') (median $rx %)"
        fi
        if [ -f "$work/res_e_libudt" ]; then echo "  p2pcat / libudt alone: $(ratio "$pm" "$(med "$work/res_e_libudt" mbps)")x"; fi
        if [ -f "$work/res_e_base" ]; then echo "  p2pcat / base alone: $(ratio "$pm" "$(med "$work/res_e_base" mbps)")x (medians of the same run)"; fi
        for c in cubic bbr; do
          res=$work/res_e_p2pcat_$c
          [ -f "$res" ] || continue
          local lo
          lo=$(awk '{ a = b = -1; for (i = 1; i <= NF; i++) { if ($i ~ /^mbps=/) a = substr($i, 6) + 0; if ($i ~ /^tmbps=/) b = substr($i, 7) + 0 }
            print (a < b ? a : b) }' "$res" | median)
          echo "  goal beside TCP $c, neither flow below a third of ${RATE[e]} Mbit/s: $(verdict "$lo" "$(awk -v r="${RATE[e]}" 'BEGIN { print r / 3 }')") (median of the slower flow: $lo Mbit/s)"
        done
        ;;
      g)
        local allok
        allok=$(cat "$work"/res_g_* 2>/dev/null | grep -c ' ok=0' || true)
        echo "  byte-exact (every run, every direction): $([ "$allok" = 0 ] && echo PASS || echo "FAIL ($allok run(s) not exact or failed)")"
        local a b
        a=$(med "$work/res_g_p2pcat_libudt" mbps) b=$(med "$work/res_g_libudt_libudt" mbps)
        echo "  goal p2pcat -> libudt beats libudt -> libudt: $(awk -v a="$a" -v b="$b" 'BEGIN { print (a != "?" && b != "?" && a + 0 > b + 0) ? "PASS" : "FAIL" }') ($a vs $b Mbit/s, $(ratio "$a" "$b")x)"
        echo "  libudt -> p2pcat / libudt -> libudt: $(ratio "$(med "$work/res_g_libudt_p2pcat" mbps)" "$b")x"
        ;;
    esac
    echo "  commands (first run; ports differ per run; PUB_A=$PUB_A is natA's WAN, ports preserved):"
    echo "    lab: NETLAB_PREFIX=$PFX NETLAB_RUN=$NETLAB_RUN netlab.sh up ${FLAGS[$s]} --nat-a full-cone --nat-b none --stun stund"
    for c in ${CONT[$s]}; do
      res=$work/res_${s}_${c//[>+]/_}
      echo "    $c:"
      sed 's/^/      /' "$res.cmd" 2>/dev/null || true
    done
  } | tee "$sum"
}

for s in $scenarios; do
  rm -f "$work/res_${s}_"* "$work/summary_$s.txt"
  echo
  echo "== scenario $s: lab ${FLAGS[$s]} --nat-a full-cone --nat-b none"
  lab_up ${FLAGS[$s]} --nat-a full-cone --nat-b none --stun stund
  echo "   lab up: peerA $PEER_A_IP behind natA $PUB_A (full cone), peerB $PUB_B; $runs run(s), contenders: ${CONT[$s]}"
  read -ra order <<<"${CONT[$s]}"
  for i in $(seq 1 "$runs"); do
    seq_=("${order[@]}")
    if [ $((i % 2)) = 0 ]; then
      seq_=()
      for ((k = ${#order[@]} - 1; k >= 0; k--)); do seq_+=("${order[k]}"); done
    fi
    for c in "${seq_[@]}"; do one "$s" "$c" "$i"; done
  done
  summary "$s"
done

echo
echo "== all scenarios"
for s in $scenarios; do cat "$work/summary_$s.txt"; done
exit $status
