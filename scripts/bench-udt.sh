#!/usr/bin/env bash
# Throughput benchmark for BENCHMARKS.md: p2pcat's Go UDT4 against the
# reference libudt 4.11, same machine, same run. Not part of CI.
#
# Usage: scripts/bench-udt.sh [SIZE_MIB (default 1024)] [RUNS (default 3)]
#
# Each run moves SIZE_MIB of random data (a file in /dev/shm) over loopback
# in rendezvous mode, MSS 1500, receiver started first, to a tmpfs file:
#   p2pcat  = p2pcat recv --raw  <-  p2pcat send --raw
#   p2pcat-enc = p2pcat recv <- p2pcat send: the default path (tokens from
#             files, Noise handshake, framed and encrypted), --stun none
#   libudt  = udtpeer recv -r    <-  udtpeer send -r     (shared/interop)
# and checks SHA-256. The receiver's stdout is a tmpfs file whose pages
# were allocated (zeroed) before the run and which is opened without
# truncation (SINK=prealloc, the default), so both contenders' output
# costs a copy into memory; SINK=trunc writes a freshly truncated file
# instead, whose page allocation and zeroing cost the receiver 0.5-1.4 s
# of kernel time per GiB on this box (dd alone: 0.50-0.84 s against 0.15 s
# into allocated pages) and made p2pcat's runs bimodal. A short output
# leaves zeros behind and fails the check either way. SINK=null sends the
# output to /dev/null (no copy into memory, no check): the transport's own
# cost. Per run it prints the rate the receiver reports
# (udtpeer "= X MB/s", p2pcat -v "(X MB/s)": connection to last byte), the
# wall-clock rate measured here (sender start -> receiver exit, so it
# includes process start, handshake and Shutdown), and the user+sys CPU
# seconds of each process; then medians and the ratios p2pcat/libudt.
# MB = 10^6 bytes. The two programs alternate within each run.
#
# Environment: SINK (prealloc, trunc or null, see above), IMPLS (default "p2pcat p2pcat-enc libudt"),
# P2P_BASE=REV (build p2pcat at git revision REV as well: IMPLS may then
# name base and base-enc, REV's p2pcat and p2pcat-enc, for an A/B),
# P2PCAT_INTEROP_BIN=dir with a built udtpeer (default: build
# a copy of ../shared/interop), WORK=dir (default /dev/shm/p2pcat-bench).
# The machine should be otherwise idle: both peers together need ~1.5 of
# 2 cores, so any other load shows up directly in the numbers.
set -euo pipefail
exec </dev/null

root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${1:-1024}
runs=${2:-3}
work=${WORK:-/dev/shm/p2pcat-bench}
mkdir -p "$work"

# ---- tools -------------------------------------------------------------
# shellcheck source=scripts/bench-tools.sh
. "$root/scripts/bench-tools.sh"

src=$work/src_${size_mib}M.bin
if [ ! -s "$src" ] || [ "$(stat -c %s "$src")" -ne $((size_mib * 1048576)) ]; then
  echo "writing $size_mib MiB of random data to $src ..."
  head -c $((size_mib * 1048576)) /dev/urandom >"$src"
fi
want=$(sha256sum <"$src" | cut -d' ' -f1)
bytes=$((size_mib * 1048576))
out=$work/out.bin
sink=${SINK:-prealloc}
case $sink in prealloc | trunc | null) ;; *) echo "bench: error: SINK must be prealloc, trunc or null" >&2; exit 2 ;; esac

printf 'machine: %s cores, %s, load average at start %s\n' "$(nproc)" "$(uname -r)" "$load0"
printf 'receiver output: %s (SINK)\n' "$sink"
printf 'p2pcat %s (%s), udtpeer on libudt %s\n' \
  "$(cd "$root" && git describe --always --dirty 2>/dev/null || echo '?')" "$(go version | cut -d' ' -f3)" \
  "$(dpkg-query -W -f '${Version}' libudt0 2>/dev/null || echo '?')"
[ -z "$P2P_BASE_BIN" ] || echo "base: p2pcat $base_rev (P2P_BASE=$P2P_BASE)"
echo "$load0" | awk '$1 > 0.5 { print "warning: load average " $1 " at start: other work is running, the numbers will be noisy" }'

# ---- helpers -------------------------------------------------------------
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
reported() { sed -n 's/.*[(=] *\([0-9][0-9.]*\) MB\/s.*/\1/p' "$1" | tail -1; }
median() { sort -n | awk '{a[NR]=$1} END {if (!NR) print "?"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }

port=$((20000 + RANDOM % 30000))
status=0
impls=${IMPLS:-p2pcat p2pcat-enc libudt}
for impl in $impls; do
  case $impl in
    p2pcat | p2pcat-enc | libudt) ;;
    base | base-enc) [ -n "$P2P_BASE_BIN" ] || { echo "bench: error: $impl needs P2P_BASE=REV" >&2; exit 2; } ;;
    *) echo "bench: error: unknown IMPLS entry \"$impl\" (p2pcat, p2pcat-enc, libudt, base, base-enc)" >&2; exit 2 ;;
  esac
done
for impl in $impls; do : >"$work/res_$impl"; done

# one IMPL RUN: a single transfer, appends "tool wall sndcpu rcvcpu" to res_IMPL
one() {
  local impl=$1 i=$2 pr ps rpid t0 t1 ok
  port=$((port + 2))
  pr=$port ps=$((port + 1))
  rm -f "$out"
  if [ "$sink" = prealloc ]; then
    fallocate -l "$bytes" "$out" # zeroed pages, allocated before the clock starts
  fi
  local rcv snd bin=$P2P
  case $impl in base*) bin=$P2P_BASE_BIN ;; esac
  if [ "$impl" = p2pcat ] || [ "$impl" = base ]; then
    rcv=("$bin" recv --raw -v --stun none --ntp none --slot 0 --localport "$pr" "127.0.0.1:$ps")
    snd=("$bin" send --raw -v --stun none --ntp none --slot 0 --localport "$ps" "127.0.0.1:$pr")
  elif [ "$impl" = p2pcat-enc ] || [ "$impl" = base-enc ]; then
    rm -f "$work"/*.tok
    rcv=("$bin" recv -v --stun none --ntp none --slot 0 --localport "$pr" --me "$work/r.tok" "@$work/s.tok")
    snd=("$bin" send -v --stun none --ntp none --slot 0 --localport "$ps" --me "$work/s.tok" "@$work/r.tok")
  else
    rcv=("$UDTPEER" recv -r -m 1500 -l "$pr" -c "127.0.0.1:$ps")
    snd=("$UDTPEER" send -r -m 1500 -l "$ps" -c "127.0.0.1:$pr")
  fi
  if [ "$sink" = prealloc ]; then
    timed "$work/rcv.cpu" timeout 600 "${rcv[@]}" 1<>"$out" 2>"$work/recv.log" &
  elif [ "$sink" = null ]; then
    timed "$work/rcv.cpu" timeout 600 "${rcv[@]}" >/dev/null 2>"$work/recv.log" &
  else
    timed "$work/rcv.cpu" timeout 600 "${rcv[@]}" >"$out" 2>"$work/recv.log" &
  fi
  rpid=$!
  sleep 0.3
  t0=$(now)
  timed "$work/snd.cpu" timeout 600 "${snd[@]}" <"$src" 2>"$work/send.log" || {
    echo "  $impl run $i: sender failed:"
    sed 's/^/    /' "$work/send.log" | tail -5
    status=1
  }
  wait $rpid || {
    echo "  $impl run $i: receiver failed:"
    sed 's/^/    /' "$work/recv.log" | tail -5
    status=1
  }
  t1=$(now)
  ok=OK
  if [ "$sink" = null ]; then
    ok="not checked (SINK=null)"
  elif [ "$(sha256sum <"$out" | cut -d' ' -f1)" != "$want" ]; then
    ok=MISMATCH status=1
  fi
  local tool wall sc rc
  tool=$(reported "$work/recv.log")
  wall=$(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / (z - a) / 1e6 }')
  sc=$(cat "$work/snd.cpu" 2>/dev/null || echo '?')
  rc=$(cat "$work/rcv.cpu" 2>/dev/null || echo '?')
  printf '%-10s run %d: %7s MB/s (receiver reports), %7s MB/s wall, CPU sender %5ss receiver %5ss, sha256 %s\n' \
    "$impl" "$i" "${tool:-?}" "$wall" "$sc" "$rc" "$ok"
  echo "${tool:-0} $wall $sc $rc" >>"$work/res_$impl"
}

echo
echo "$runs runs x $size_mib MiB, loopback rendezvous, MSS 1500, receiver first"
for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) = 1 ]; then order=$impls; else order=$(echo $impls | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for impl in $order; do one "$impl" "$i"; done
done
rm -f "$out"

echo
declare -A med
for impl in $impls; do
  for col in 1 2 3 4; do
    med[$impl$col]=$(awk -v c=$col '{print $c}' "$work/res_$impl" | median)
  done
  printf 'median %-10s %7s MB/s (receiver reports), %7s MB/s wall, CPU sender %ss receiver %ss\n' \
    "$impl" "${med[${impl}1]}" "${med[${impl}2]}" "${med[${impl}3]}" "${med[${impl}4]}"
done
# ratios A B: A's medians over B's, if both ran.
ratios() {
  case " $impls " in *" $1 "*) ;; *) return ;; esac
  case " $impls " in *" $2 "*) ;; *) return ;; esac
  printf 'ratio %s/%s: throughput %s (reported) %s (wall); CPU sender %s receiver %s\n' "$1" "$2" \
    "$(ratio "${med[${1}1]}" "${med[${2}1]}")" "$(ratio "${med[${1}2]}" "${med[${2}2]}")" \
    "$(ratio "${med[${1}3]}" "${med[${2}3]}")" "$(ratio "${med[${1}4]}" "${med[${2}4]}")"
}
for impl in $impls; do
  [ "$impl" = libudt ] || ratios "$impl" libudt
done
ratios p2pcat base
ratios p2pcat-enc base-enc
exit $status
