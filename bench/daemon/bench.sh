#!/bin/bash
# The daemon's benchmark (issue 7): API latency of `ls` with 100 instances
# (median, p99) next to `podman ps` with 100 containers, and how many
# busybox containers the daemon starts in a minute next to `podman run -d`
# (same bundle contents, same sleep). Needs root, busybox-static, curl,
# podman (optional: its column is skipped without it).
#
#   bench/daemon/bench.sh [SECONDS]        (default 60)
#   ONLY=ls|containers|vms bench/daemon/bench.sh    one section alone
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
vessel=$bin/vessel
[ -x "$vessel" ] && [ -x "$bin/vessel-runtime" ] || { echo "build first: cargo build --release -p vessel-cli -p vessel-runtime" >&2; exit 1; }
work=$(mktemp -d /var/tmp/vessel-bench.XXXXXX)
export VESSEL_SOCKET=$work/vessel.sock
"$vessel" daemon --socket "$VESSEL_SOCKET" --state-dir "$work/state" --allow-dir "$work" --cpu-overcommit 1000 --memory-overcommit 100 2>"$work/daemon.log" &
daemon=$!
cleanup() {
    for n in $("$vessel" ls --json 2>/dev/null | grep -o '"name": "[^"]*"' | cut -d'"' -f4); do
        "$vessel" rm -f "$n" >/dev/null 2>&1 || true
    done
    kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true
    if command -v podman >/dev/null; then podman rm -f -a >/dev/null 2>&1 || true; fi
    for f in "$work"/qemu-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
# crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"):
# podman runs Debian's runc there, as vessel's own tests compare against.
prt=""
if command -v runc >/dev/null; then prt="--runtime runc"; fi
for _ in $(seq 100); do [ -S "$VESSEL_SOCKET" ] && break; sleep 0.1; done

# A busybox bundle running sleep.
b=$work/bundle
mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
cp /bin/busybox "$b/rootfs/bin/"
for a in sh sleep; do ln -sf busybox "$b/rootfs/bin/$a"; done
cat >"$b/config.json" <<'JSON'
{"ociVersion": "1.2.0",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sleep", "1000"],
             "env": ["PATH=/bin"], "cwd": "/"},
 "root": {"path": "rootfs"}, "hostname": "bench",
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
 "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}}
JSON

# percentile P of the numbers on stdin (milliseconds, 3 decimals)
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p/100)+1; printf "%.3f", a[i]*1000}'; }

only=${ONLY:-}
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

if want ls; then
echo "== ls latency with 100 instances (200 requests)"
for i in $(seq 100); do "$vessel" create "i$i" --container --bundle "$b" >/dev/null; done
for _ in $(seq 200); do
    curl -s -o /dev/null -w '%{time_total}\n' --unix-socket "$VESSEL_SOCKET" http://v/v1/instances
done >"$work/ls.txt"
v_med=$(pct 50 <"$work/ls.txt"); v_p99=$(pct 99 <"$work/ls.txt")
echo "vessel GET /v1/instances: median ${v_med} ms, p99 ${v_p99} ms"
# The whole client command, to compare with the whole `podman ps` command.
for _ in $(seq 200); do
    s=$(date +%s.%N); "$vessel" ls >/dev/null; e=$(date +%s.%N)
    echo "$e - $s" | bc
done >"$work/vls.txt"
c_med=$(pct 50 <"$work/vls.txt"); c_p99=$(pct 99 <"$work/vls.txt")
echo "vessel ls (the whole command): median ${c_med} ms, p99 ${c_p99} ms"
for i in $(seq 100); do "$vessel" rm "i$i" >/dev/null; done
if command -v podman >/dev/null; then
    podman rm -f -a >/dev/null 2>&1 || true
    for i in $(seq 100); do podman $prt create --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --name "p$i" --rootfs "$b/rootfs" /bin/sleep 1000 >/dev/null; done
    for _ in $(seq 200); do
        s=$(date +%s.%N); podman ps -a --format '{{.Names}}' >/dev/null; e=$(date +%s.%N)
        echo "$e - $s" | bc
    done >"$work/pls.txt"
    p_med=$(pct 50 <"$work/pls.txt"); p_p99=$(pct 99 <"$work/pls.txt")
    echo "podman ps -a (the whole command): median ${p_med} ms, p99 ${p_p99} ms"
    podman rm -f -a >/dev/null 2>&1 || true
fi
fi

if want containers; then
echo "== containers started in ${secs} s (create + start, sleeping busybox)"
n=0; end=$((SECONDS + secs))
while [ $SECONDS -lt $end ]; do
    n=$((n + 1))
    "$vessel" create "c$n" --container --bundle "$b" --start >/dev/null
done
echo "vessel daemon: $n containers in ${secs} s"
for i in $(seq $n); do "$vessel" rm -f "c$i" >/dev/null; done
if command -v podman >/dev/null; then
    m=0; end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ]; do
        m=$((m + 1))
        podman $prt run -d --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --name "r$m" --rootfs "$b/rootfs" /bin/sleep 1000 >/dev/null
    done
    echo "podman $prt run -d --network host: $m containers in ${secs} s"
    podman rm -f -a >/dev/null 2>&1 || true
fi
fi

if want vms; then
echo "== small emulated VMs started in ${secs} s (riscv64 bare-metal program that prints and parks, 16M)"
if command -v riscv64-unknown-elf-gcc >/dev/null; then
    cat >"$work/park.S" <<'ASM'
    .section .text
    .globl _start
_start:
    li s0, 0x10000000
    li a0, 'k'
    sb a0, 0(s0)
park:
    wfi
    j park
ASM
    riscv64-unknown-elf-gcc -march=rv64imac_zicsr -mabi=lp64 -nostdlib -nostartfiles -static \
        -Wl,-Ttext=0x80000000 -Wl,-N -Wl,--no-relax -o "$work/park.elf" "$work/park.S"
    # The daemon admits at most 1000 vCPUs per host CPU: a fast host
    # reaches that before the minute is over, and the rate is then taken
    # over the time it took.
    n=0; began=$(date +%s.%N); end=$((SECONDS + secs)); why=""
    while [ $SECONDS -lt $end ]; do
        if ! "$vessel" create "v$((n + 1))" --vm --start -- --arch riscv64 --firmware "$work/park.elf" --memory 16M >/dev/null 2>"$work/refused.txt"; then
            why=" (then refused: $(cut -c1-120 "$work/refused.txt"))"
            "$vessel" rm -f "v$((n + 1))" >/dev/null 2>&1 || true
            break
        fi
        n=$((n + 1))
    done
    took=$(echo "$(date +%s.%N) - $began" | bc)
    running=$("$vessel" ls | grep -c ' running ' || true)
    echo "vessel daemon: $n VMs started in $took s, $(echo "$n * 60 / $took" | bc) a minute ($running listed running at the end)$why"
    for i in $(seq $n); do "$vessel" rm -f "v$i" >/dev/null; done
    if command -v qemu-system-riscv64 >/dev/null; then
        m=0; end=$((SECONDS + secs))
        while [ $SECONDS -lt $end ]; do
            m=$((m + 1))
            qemu-system-riscv64 -M virt -m 16M -bios "$work/park.elf" -display none -serial none \
                -monitor none -daemonize -pidfile "$work/qemu-$m.pid"
        done
        echo "qemu-system-riscv64 -daemonize: $m VMs started in ${secs} s"
        for f in "$work"/qemu-*.pid; do kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done
    fi
else
    echo "skipped: riscv64-unknown-elf-gcc is not installed"
fi
fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
