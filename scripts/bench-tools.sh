# Sourced by the benchmark scripts (bash): builds p2pcat into $work and
# finds or builds the libudt oracle. Needs $root (the repository) and $work;
# sets P2P and UDTPEER. P2PCAT_INTEROP_BIN=dir with a built udtpeer skips
# the build of ../shared/interop.
[ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
load0=$(cut -d' ' -f1-3 /proc/loadavg) # before our own builds add to it

echo "building p2pcat ..."
(cd "$root" && go build -o "$work/p2pcat" .)
P2P=$work/p2pcat
# P2P_BASE=REV: p2pcat built at git revision REV too, as P2P_BASE_BIN, for
# an A/B in the same run (the scripts' contender "base").
P2P_BASE_BIN=
if [ -n "${P2P_BASE:-}" ]; then
  base_rev=$(cd "$root" && git rev-parse --short --verify "$P2P_BASE^{commit}") ||
    { echo "bench: error: P2P_BASE=$P2P_BASE is not a git revision" >&2; exit 1; }
  P2P_BASE_BIN=$work/p2pcat-base
  echo "building p2pcat at $base_rev (P2P_BASE=$P2P_BASE) as contender \"base\" ..."
  rm -rf "$work/basewt"
  (cd "$root" && git worktree add -f -q --detach "$work/basewt" "$base_rev")
  (cd "$work/basewt" && go build -o "$P2P_BASE_BIN" .) ||
    { echo "bench: error: building P2P_BASE=$P2P_BASE failed" >&2; exit 1; }
  (cd "$root" && git worktree remove --force "$work/basewt")
fi
if [ -n "${P2PCAT_INTEROP_BIN:-}" ]; then
  UDTPEER=$P2PCAT_INTEROP_BIN/udtpeer
else
  echo "building udtpeer from $root/../shared/interop ..."
  rm -rf "$work/interop"
  cp -R "$root/../shared/interop" "$work/interop"
  chmod -R u+w "$work/interop"
  make -s -C "$work/interop" udtpeer >/dev/null
  UDTPEER=$work/interop/udtpeer
fi
[ -x "$UDTPEER" ] || { echo "bench: error: no udtpeer at $UDTPEER" >&2; exit 1; }
