#!/usr/bin/env bash
# Container engine benchmark: create + start + delete of a container that
# runs /bin/true with pid, mount, uts, ipc and network namespaces and a
# memory limit, N times (default 50), with vessel-runtime and with runc on
# the same bundle in the same run. Prints both medians and the ratio.
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

# Times N create+start+delete cycles of runtime $1; prints the median in ms.
measure() {
  local rt=$1 name=$2 root="$work/root-$2" i t0 t1
  local -a times=()
  for ((i = 0; i < N; i++)); do
    t0=$EPOCHREALTIME
    "$rt" --root "$root" create --bundle "$work/bundle" "b$i" </dev/null >/dev/null 2>"$work/err"
    "$rt" --root "$root" start "b$i" </dev/null >/dev/null 2>>"$work/err"
    "$rt" --root "$root" delete --force "b$i" </dev/null >/dev/null 2>>"$work/err"
    t1=$EPOCHREALTIME
    times+=("$(( (${t1/./} - ${t0/./}) ))")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v n="$N" '{a[NR]=$1} END {m = (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2; printf "%.2f\n", m / 1000}'
}

vessel_ms=$(measure "$VR" vessel)
echo "vessel-runtime: median $vessel_ms ms over $N create+start+delete"
if [ -n "$RUNC" ]; then
  runc_ms=$(measure "$RUNC" runc)
  echo "runc ($($RUNC --version | head -1)): median $runc_ms ms over $N"
  awk -v v="$vessel_ms" -v r="$runc_ms" 'BEGIN {printf "ratio vessel/runc: %.2f (goal <= 0.33)\n", v / r}'
else
  echo "runc not installed: no comparison"
fi
