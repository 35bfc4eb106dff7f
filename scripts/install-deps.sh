#!/usr/bin/env bash
# Install the Debian packages listed in scripts/packages.txt that are missing.
# As root it installs them with apt-get; otherwise it says which are missing,
# why each is needed, and the command to run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
list="$here/packages.txt"

missing=()
reasons=()
while read -r pkg why; do
    case "$pkg" in ''|'#'*) continue ;; esac
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
        reasons+=("  $pkg: $why")
    fi
done <"$list"

if ! command -v cargo >/dev/null 2>&1; then
    echo "vessel: cargo is not on PATH; install the Rust toolchain (rustup or Debian's cargo) first." >&2
    exit 1
fi

[ ${#missing[@]} -eq 0 ] && exit 0

echo "vessel needs these Debian packages:"
printf '%s\n' "${reasons[@]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "Install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
