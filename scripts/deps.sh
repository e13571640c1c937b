#!/usr/bin/env bash
# Installs the Debian packages sqlfs needs to build, test and run sandboxes.
# Idempotent and quick when everything is present: apt is only called for missing packages.
set -euo pipefail
pkgs=(
  # build
  build-essential pkg-config clang
  libmicrohttpd-dev libjansson-dev libsqlite3-dev libssl-dev libarchive-dev libseccomp-dev
  libcmocka-dev libclang-rt-14-dev libcurl4-openssl-dev libdeflate-dev libpq-dev
  libhttp-parser-dev libpython3-dev musl-tools
  # tests
  python3 python3-pytest python3-httpx python3-jsonschema python3-prometheus-client sqlite3 curl
  valgrind bubblewrap
  postgresql-15 postgresql-client-15
  python3-pip python3-venv python3-setuptools python3-wheel
  # tools inside the default sandbox rootfs (the host /usr)
  bash bash-static coreutils grep sed gawk findutils diffutils patch tar gzip bzip2 xz-utils zstd zip unzip
  jq git python3 nodejs ripgrep file tree bc xxd procps less
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages and not root; run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
