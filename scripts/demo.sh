#!/usr/bin/env bash
# `make demo`: show what vessel does on this host, one step per engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/release
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
