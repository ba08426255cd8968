# Sourced by the benchmark scripts (bash): builds p2pcat into $work and
# finds or builds the libudt oracle. Needs $root (the repository) and $work;
# sets P2P and UDTPEER. P2PCAT_INTEROP_BIN=dir with a built udtpeer skips
# the build of ../shared/interop.
[ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
load0=$(cut -d' ' -f1-3 /proc/loadavg) # before our own builds add to it

echo "building p2pcat ..."
(cd "$root" && go build -o "$work/p2pcat" .)
P2P=$work/p2pcat
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
