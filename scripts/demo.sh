#!/usr/bin/env bash
# `make demo`: show what vessel does on this host, one step per engine.
set -euo pipefail
cd "$(dirname "$0")/.."
vessel=target/release/vessel

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Does this host have the virtualization extensions? (vessel host-check)"
"$vessel" host-check
