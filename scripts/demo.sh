#!/usr/bin/env bash
# `make demo`: show what vessel does on this host, one step per engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
vessel=$bin/vessel
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Does this host have the virtualization extensions? (vessel host-check)"
"$vessel" host-check

step "Emulation: Debian's own riscv64 kernel on vessel's RISC-V machine"
if ! "$vessel" image show debian-riscv64 >/dev/null 2>&1; then
    echo "Fetching Debian trixie's riscv64 kernel, OpenSBI and busybox (once, ~115 MB):"
    "$vessel" image fetch debian-riscv64
fi
cat >"$work/demo.sh" <<'SCRIPT'
#!/bin/sh
echo "--- uname -a"; uname -a
echo "--- /proc/cpuinfo"; cat /proc/cpuinfo
echo "--- powering off"
SCRIPT
chmod +x "$work/demo.sh"
"$vessel" image initramfs --add "$work/demo.sh:/etc/vessel/init.d/10-demo" -o "$work/demo.gz"
echo "\$ vessel run debian-riscv64 --cpus 2 --initrd demo.gz   (boots in about a minute)"
VESSEL_STATS=1 "$vessel" run debian-riscv64 --cpus 2 --initrd "$work/demo.gz" --append "console=ttyS0 quiet" </dev/null

step "OS-level: a busybox container under vessel-runtime (pid, mount, uts, ipc and network namespaces, 64 MiB limit)"
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in sh hostname cat echo; do ln -sf busybox "$bundle/rootfs/bin/$applet"; done
mem=/sys/fs/cgroup/memory/memory.limit_in_bytes
[ -e /sys/fs/cgroup/cgroup.controllers ] && mem=/sys/fs/cgroup/memory.max
cat >"$bundle/config.json" <<JSON
{
  "ociVersion": "1.2.0",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/bin/sh", "-c", "echo \"hostname: \$(hostname)\"; echo \"pid: \$\$\"; echo \"memory limit: \$(cat $mem) bytes\""],
    "env": ["PATH=/bin"],
    "cwd": "/"
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "vessel-demo",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}, {"type": "cgroup"}],
    "resources": {"memory": {"limit": 67108864}}
  }
}
JSON
echo "\$ vessel-runtime run demo   (in $bundle)"
(cd "$bundle" && "$bin/vessel-runtime" --root "$work/runtime" run "demo-$$")

step "Consolidation: the daemon runs a VM and a container side by side (vessel daemon, create, start, ls)"
export VESSEL_SOCKET=$work/vessel.sock
"$vessel" daemon --socket "$VESSEL_SOCKET" --state-dir "$work/state" --allow-dir "$work" 2>"$work/daemon.log" &
daemon_pid=$!
cleanup() {
    "$vessel" rm -f demo-vm demo-box demo-pc >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$VESSEL_SOCKET" ] && break; sleep 0.1; done
cp -r "$bundle" "$work/box"
ln -sf busybox "$work/box/rootfs/bin/sleep"
sed -i 's|"args": \[.*\],|"args": ["/bin/sh", "-c", "echo up; exec sleep 1000"],|' "$work/box/config.json"
echo "\$ vessel create demo-vm --vm -- debian-riscv64 --memory 256M --cpus 2"
"$vessel" create demo-vm --vm -- debian-riscv64 --memory 256M --cpus 2
echo "\$ vessel create demo-box --container --bundle box"
"$vessel" create demo-box --container --bundle "$work/box"
# Hardware-assisted: an x86_64 guest on KVM. Linux needs real VT-x/AMD-V
# to boot in useful time, so the demo runs the KVM engine's small test
# guest (crates/x86/tests/guests/button.S) where /dev/kvm opens.
pc=""
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && command -v as >/dev/null; then
    guests=crates/x86/tests/guests
    as --64 -I "$guests" -o "$work/pc.o" "$guests/button.S"
    ld -static -nostdlib --build-id=none -z max-page-size=0x1000 --no-warn-rwx-segments \
        -T "$guests/guest.ld" -o "$work/pc.elf" "$work/pc.o"
    echo "\$ vessel create demo-pc --vm -- --arch x86_64 --engine kvm --kernel pc.elf --memory 64M"
    "$vessel" create demo-pc --vm -- --arch x86_64 --engine kvm --kernel "$work/pc.elf" --memory 64M
    pc=demo-pc
fi
"$vessel" start demo-vm >/dev/null
"$vessel" start demo-box >/dev/null
[ -n "$pc" ] && "$vessel" start "$pc" >/dev/null
echo "\$ vessel ls"
"$vessel" ls
if [ -n "$pc" ]; then
    for _ in $(seq 100); do grep -q "button ready" "$work/state/instances/demo-pc/console.log" 2>/dev/null && break; sleep 0.1; done
    echo "\$ vessel stop demo-pc   (presses its virtio-input power button; the guest powers off)"
    "$vessel" stop demo-pc
    echo "\$ vessel logs demo-pc | tail -2"
    "$vessel" logs demo-pc | tail -2
fi
echo "\$ vessel exec demo-box -- hostname"
"$vessel" exec demo-box -- hostname
echo "\$ vessel ls   (the instances are removed when the demo ends)"
"$vessel" ls
