#!/bin/sh
# Paravirtual I/O benchmark: vessel's virtio-blk / virtio-net against QEMU's
# on the same riscv64 guest (see io.py and docs/benchmarks.md).
# Needs root (a network namespace with a tap), iproute2, qemu-system-misc,
# python3, and `vessel image fetch debian-riscv64` done (or network).
# Knobs: RUNS (3), DISK_MIB (256), NET_MIB (32), PLAIN=1 to also run both
# with their net offloads off, ONLY=vessel|QEMU to run one side (no ratios),
# STATS=1 to print the guest's TCP, interrupt and interface counters.
# VESSEL_PROFILE=PATH profiles vessel's guest (docs/virtio.md, "Profiling
# the guest"): io.py also writes PATH.phases (Unix times of each phase) and
# PATH.kallsyms (the guest's /proc/kallsyms) for bench/riscv/profile.py.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
DISK_MIB=${DISK_MIB:-256}
NET_MIB=${NET_MIB:-32}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -j2 -p vessel-cli >&2
VESSEL=$(realpath "$TARGET/release/vessel")
IMG=${XDG_CACHE_HOME:-$HOME/.cache}/vessel/images/debian-riscv64
[ -f "$IMG/manifest.json" ] || "$VESSEL" image fetch debian-riscv64 >&2

NS=vessel-bench-io-$$
TAP=vbtap0
WORK=$(mktemp -d)
cleanup() {
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

KSYMS=:
if [ -n "${VESSEL_PROFILE:-}" ]; then
    # The guest's symbols (modules included) go out through the disk.
    KSYMS='cat /proc/kallsyms >/tmp/ks; dd if=/tmp/ks of=/dev/vda bs=65536 conv=fsync 2>/dev/null; echo "bench-kallsyms $(wc -c </tmp/ks)"'
fi
cat > "$WORK/10-bench" <<EOF
#!/bin/sh
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ping -c 1 -W 5 10.0.2.1 >/dev/null 2>&1 || ping -c 1 -W 5 10.0.2.1 >/dev/null 2>&1
# busybox dd prints no timing: the guest's /proc/uptime brackets each dd.
echo "bench-disk-write \$(cut -d' ' -f1 /proc/uptime)"
dd if=/dev/zero of=/dev/vda bs=1048576 count=$DISK_MIB oflag=direct 2>/dev/null
echo "bench-disk-read \$(cut -d' ' -f1 /proc/uptime)"
dd if=/dev/vda of=/dev/null bs=1048576 count=$DISK_MIB iflag=direct 2>/dev/null
echo "bench-disk-end \$(cut -d' ' -f1 /proc/uptime)"
mkdir -p /tmp/www
dd if=/dev/zero of=/tmp/www/up bs=1048576 count=$NET_MIB 2>/dev/null
httpd -p 80 -h /tmp/www
echo bench-net
# The host fetches /up from httpd, then serves this download.
nc 10.0.2.1 5002 </dev/null >/dev/null
# Guest-side counters for diagnosis (retransmits, interrupts, drops).
grep -E '^(Tcp|TcpExt):' /proc/net/snmp /proc/net/netstat 2>/dev/null | sed 's/^/bench-stat /'
grep -E 'virtio|plic|PLIC' /proc/interrupts | sed 's/^/bench-stat /'
sed 's/^/bench-stat /' /proc/net/dev
$KSYMS
echo bench-done
EOF
chmod +x "$WORK/10-bench"
"$VESSEL" image initramfs --add "$WORK/10-bench:/etc/vessel/init.d/10-bench" -o "$WORK/initrd.gz" >&2
# A fully allocated disk, so neither VMM reads holes.
dd if=/dev/zero of="$WORK/disk.img" bs=1M count=$((DISK_MIB + 16)) status=none

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" addr add 10.0.2.1/24 dev "$TAP"
ip -n "$NS" link set "$TAP" up

echo "load before: $(cat /proc/loadavg)" >&2
set -- --vessel "$VESSEL" --runs "$RUNS" --net-mib "$NET_MIB" --disk-mib "$DISK_MIB" \
    --firmware "$IMG/fw_dynamic.bin" --kernel "$IMG/Image" --initrd "$WORK/initrd.gz" \
    --disk "$WORK/disk.img" --tap "$TAP"
if [ "${PLAIN:-0}" = 1 ]; then set -- "$@" --plain; fi
if [ -n "${ONLY:-}" ]; then set -- "$@" --only "$ONLY"; fi
if [ "${STATS:-0}" = 1 ]; then set -- "$@" --stats; fi
ip netns exec "$NS" python3 bench/devices/io.py "$@"
echo "load after: $(cat /proc/loadavg)" >&2
