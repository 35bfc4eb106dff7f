#!/bin/sh
# Boot benchmark: vessel's riscv64 emulator vs qemu-system-riscv64 (median of RUNS).
# Needs: `vessel image fetch debian-riscv64` done (or network), qemu-system-misc, python3.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -j2 -p vessel-cli >&2
VESSEL=$TARGET/release/vessel
IMG=${XDG_CACHE_HOME:-$HOME/.cache}/vessel/images/debian-riscv64
[ -f "$IMG/manifest.json" ] || "$VESSEL" image fetch debian-riscv64 >&2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '#!/bin/sh\necho "vessel-bench: $(uname -r)"\n' > "$WORK/10-bench"
chmod +x "$WORK/10-bench"
"$VESSEL" image initramfs --add "$WORK/10-bench:/etc/vessel/init.d/10-bench" -o "$WORK/initrd.gz" >&2
echo "load: $(uptime)" >&2
python3 bench/riscv/boot.py --vessel "$VESSEL" --runs "$RUNS" \
    --firmware "$IMG/fw_dynamic.bin" --kernel "$IMG/Image" --initrd "$WORK/initrd.gz"
echo "load: $(uptime)" >&2
