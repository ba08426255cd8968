#!/usr/bin/env bash
# Stream-layer figures for BENCHMARKS.md (issue: the pipe contract), kept
# out of CI. Loopback only, no STUN/NTP (--stun none --ntp none --slot 0).
#
# Usage: scripts/bench-stream.sh [RUNS=3] [BIG_GIB=2]
#   1. compression on text: `tar c -C $(go env GOROOT) src` sent with and
#      without -z; bytes on the wire (UDT payload, as p2pcat -v reports).
#   2. -z on incompressible data: 1 GiB of random bytes with and without
#      -z, RUNS runs each, receiver-reported MB/s, median and ratio.
#   3. memory: a BIG_GIB GiB stream (from /dev/zero through the whole
#      encrypted path) with peak RSS of each side from /usr/bin/time -v.
set -euo pipefail
exec </dev/null
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
big=${2:-2}
work=${WORK:-/dev/shm/p2pcat-bench-stream}
mkdir -p "$work"
[ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
(cd "$root" && go build -o "$work/p2pcat" .)
P=$work/p2pcat
NO=(--stun none --ntp none --slot 0)
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# transfer SRC_CMD SEND_FLAGS... : runs one loopback transfer, prints
# "<recv MB/s> <wire bytes> <stream bytes>"; SRC_CMD feeds the sender.
transfer() {
  local src=$1; shift
  rm -f "$work"/*.tok
  "$P" recv -v "${NO[@]}" --me "$work/a.tok" "@$work/b.tok" >/dev/null 2>"$work/recv.log" &
  local rp=$!
  bash -c "$src" | "$P" send -v "$@" "${NO[@]}" --me "$work/b.tok" "@$work/a.tok" 2>"$work/send.log"
  wait $rp
  local rate wire n
  rate=$(sed -n 's/.*received [0-9]* bytes in [0-9.]*s (\([0-9.]*\) MB\/s).*/\1/p' "$work/recv.log")
  wire=$(sed -n 's/.*sent [0-9]* bytes .*; \([0-9]*\) bytes on the wire.*/\1/p' "$work/send.log")
  n=$(sed -n 's/.*sent \([0-9]*\) bytes .*/\1/p' "$work/send.log")
  echo "$rate $wire $n"
}

echo "== 1. compression on Go's source tree (tar c -C GOROOT src)"
goroot=$(go env GOROOT)
read -r _ wplain n <<<"$(transfer "tar c -C '$goroot' src")"
read -r _ wz _ <<<"$(transfer "tar c -C '$goroot' src" -z)"
awk -v n="$n" -v a="$wplain" -v b="$wz" 'BEGIN {printf "stream %d bytes; wire without -z %d, with -z %d: %.2fx fewer bytes on the wire\n", n, a, b, a/b}'

echo "== 2. -z on 1 GiB of random data, $runs runs each (receiver MB/s)"
head -c $((1 << 30)) /dev/urandom >"$work/rand.bin"
: >"$work/plain"; : >"$work/z"
for i in $(seq 1 "$runs"); do
  read -r r _ _ <<<"$(transfer "cat '$work/rand.bin'")"; echo "$r" >>"$work/plain"
  read -r rz _ _ <<<"$(transfer "cat '$work/rand.bin'" -z)"; echo "$rz" >>"$work/z"
  echo "run $i: plain $r MB/s, -z $rz MB/s"
done
mp=$(median <"$work/plain"); mz=$(median <"$work/z")
awk -v p="$mp" -v z="$mz" 'BEGIN {printf "median plain %.1f MB/s, -z %.1f MB/s: -z/plain = %.3f\n", p, z, z/p}'
rm -f "$work/rand.bin"

echo "== 3. peak RSS over a $big GiB stream"
rm -f "$work"/*.tok
/usr/bin/time -v "$P" recv "${NO[@]}" --me "$work/a.tok" "@$work/b.tok" >/dev/null 2>"$work/recv.rss" &
rp=$!
head -c $((big << 30)) /dev/zero | /usr/bin/time -v "$P" send "${NO[@]}" --me "$work/b.tok" "@$work/a.tok" 2>"$work/send.rss"
wait $rp
echo "sender peak RSS $(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/send.rss") kB, receiver $(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/recv.rss") kB"
