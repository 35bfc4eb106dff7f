#!/usr/bin/env bash
# Run `cargo test` with the given arguments, then print one closing line that
# adds up every test binary's result: `tests: N passed, N failed, N skipped`
# (skipped = #[ignore]d). The exit status is cargo's.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"${CARGO:-cargo}" test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^passed;?$/)  p += $(i-1)
            if ($i ~ /^failed;?$/)  f += $(i-1)
            if ($i ~ /^ignored;?$/) s += $(i-1)
        }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
