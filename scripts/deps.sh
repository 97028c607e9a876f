#!/usr/bin/env bash
# Installs the Debian packages seeswarm needs to build, test and run the demo.
# Idempotent: it checks each package with dpkg and installs only what is missing,
# saying what it installs. Needs root (or sudo) only when something is missing.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang llvm libclang-rt-14-dev
  libuv1-dev libssl-dev openssl libprotobuf-c-dev protobuf-c-compiler
  libjansson-dev libmicrohttpd-dev libsqlite3-dev sqlite3
  libcmocka-dev python3-pytest python3-cryptography
  libseccomp-dev libarchive-dev nettle-dev libgmp-dev libtss2-dev libtss2-tcti-swtpm0 swtpm swtpm-tools
  iproute2 procps
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} Debian packages present"
  exit 0
fi

echo "deps: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "deps: done"
