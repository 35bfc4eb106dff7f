#!/usr/bin/env bash
# Container engine benchmark: create + start + delete of a container that
# runs /bin/true with pid, mount, uts, ipc and network namespaces and a
# memory limit, N times (default 50), with vessel-runtime and with runc on
# the same bundle in the same run, taking turns cycle by cycle. Prints
# both medians, the ratio and the load average.
#
# Usage (root): bench/container/bench.sh [N]
#   VESSEL_RUNTIME=path  the binary to measure (default: target/release/vessel-runtime)
#   RUNC=path            the reference runtime (default: runc on PATH)
set -euo pipefail
N=${1:-50}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
VR=${VESSEL_RUNTIME:-${CARGO_TARGET_DIR:-$repo/target}/release/vessel-runtime}
RUNC=${RUNC:-$(command -v runc || true)}
[ "$(id -u)" = 0 ] || { echo "bench: needs root" >&2; exit 1; }
[ -x "$VR" ] || { echo "bench: $VR missing; run: cargo build --release -p vessel-runtime" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "bench: needs /bin/busybox (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d /tmp/vessel-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/dev"
cp /bin/busybox "$work/bundle/rootfs/bin/"
ln -s busybox "$work/bundle/rootfs/bin/true"
cat > "$work/bundle/config.json" <<'JSON'
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
              "env": ["PATH=/bin"], "cwd": "/",
              "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
              "noNewPrivileges": true},
  "root": {"path": "rootfs"},
  "hostname": "bench",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {
    "resources": {"memory": {"limit": 67108864}},
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}]
  }
}
JSON

# One create+start+delete cycle of runtime $1 (state under $2, id $3);
# prints its wall time in microseconds.
cycle() {
  local rt=$1 root=$2 id=$3 t0 t1
  t0=$EPOCHREALTIME
  "$rt" --root "$root" create --bundle "$work/bundle" "$id" </dev/null >/dev/null 2>"$work/err"
  "$rt" --root "$root" start "$id" </dev/null >/dev/null 2>>"$work/err"
  "$rt" --root "$root" delete --force "$id" </dev/null >/dev/null 2>>"$work/err"
  t1=$EPOCHREALTIME
  echo $(( ${t1/./} - ${t0/./} ))
}

median_ms() {
  sort -n | awk '{a[NR]=$1} END {n = NR; m = (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2; printf "%.2f\n", m / 1000}'
}

# The machine may be shared and its load may change during the run: the
# two runtimes take turns, one cycle each, so both see the same load.
: >"$work/vessel.us"
: >"$work/runc.us"
for ((i = 0; i < N; i++)); do
  cycle "$VR" "$work/root-vessel" "b$i" >>"$work/vessel.us"
  if [ -n "$RUNC" ]; then
    cycle "$RUNC" "$work/root-runc" "b$i" >>"$work/runc.us"
  fi
done
load=$(cut -d' ' -f1-3 /proc/loadavg)
vessel_ms=$(median_ms <"$work/vessel.us")
echo "vessel-runtime: median $vessel_ms ms over $N create+start+delete"
if [ -n "$RUNC" ]; then
  runc_ms=$(median_ms <"$work/runc.us")
  echo "runc ($($RUNC --version | head -1)): median $runc_ms ms over $N"
  awk -v v="$vessel_ms" -v r="$runc_ms" 'BEGIN {printf "ratio vessel/runc: %.2f (goal <= 0.33)\n", v / r}'
else
  echo "runc not installed: no comparison"
fi
echo "load average at the end: $load"
