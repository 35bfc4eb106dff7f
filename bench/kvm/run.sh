#!/bin/sh
# KVM microvm benchmark (docs/benchmarks.md, section "kvm"):
#  1. wall time from spawning the VMM process to the guest's first serial
#     byte, and the CPU time the whole VMM process used;
#  2. the VMM's own memory for a 128 MiB guest: resident set minus the
#     guest memory the guest touched.
# The guest is tests/guests/bootparams.S: it prints within a few hundred
# instructions of its entry point and then resets through the i8042.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-30}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --profile dist --locked -p vessel-x86 --example microvm --example first_byte
bin=$TARGET/dist/examples
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
guests=crates/x86/tests/guests
as --64 -I "$guests" -o "$work/guest.o" "$guests/bootparams.S"
ld -static -nostdlib --build-id=none -z max-page-size=0x1000 --no-warn-rwx-segments \
    -T "$guests/guest.ld" -o "$work/guest.elf" "$work/guest.o"

echo "== kvm: spawn to first serial byte, 128 MiB, 1 vCPU ($RUNS runs)"
"$bin/first_byte" "$RUNS" -- "$bin/microvm" --kernel "$work/guest.elf" --memory 128
echo "== kvm: VMM memory, 128 MiB guest"
"$bin/microvm" --kernel "$work/guest.elf" --memory 128 --report >/dev/null
