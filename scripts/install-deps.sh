#!/usr/bin/env bash
# Installs the Debian 12 packages troupe needs to build, test and benchmark.
# Idempotent and quiet: prints nothing and touches nothing when all are present.
#
#   scripts/install-deps.sh          what the libraries, tools, samples and tests need
#   scripts/install-deps.sh --fuzz   also clang + libFuzzer, for the optional fuzzer
#                                    targets (without clang they are skipped)
set -euo pipefail

packages=(
  build-essential cmake ccache git
  ninja-build           # ./run's generator for new build directories
  libcaf-dev            # CAF 0.17.6: the in-process actor runtime
  libboost-dev          # Boost.Asio: the node-to-node transport
  libssl-dev openssl    # TLS of the transport (OpenSSL under Boost.Asio SSL); the CLI makes test certificates
  libsqlite3-dev sqlite3
  libpq-dev postgresql  # the PostgreSQL journal (libpq); its tests start a throwaway server
  nlohmann-json3-dev    # codec and config
  libfmt-dev            # log formatting
  doctest-dev           # tests
  libcli11-dev          # command-line parsing of every troupe binary
  pkg-config            # the install test checks troupe.pc
)
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-14-dev)  # libFuzzer targets (corpus replay runs with g++)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
