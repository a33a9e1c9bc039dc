#!/usr/bin/env bash
# Builds the CAF libraries Debian installs (libcaf-dev: libcaf_core, libcaf_io) once
# more, from the same upstream source, with ThreadSanitizer, into DEST/lib
# (default build-tsan/caf/lib). ./run tsan-test runs it; the TSan suites load these
# libraries instead of Debian's (LD_LIBRARY_PATH, set by tests/CMakeLists.txt).
#
# Why: TSan sees synchronization only in instrumented code. Debian's libcaf is not
# instrumented, so every message an actor receives (sent on one thread, read on a
# scheduler thread after CAF's lock-free mailbox and work-stealing queues) looked
# like a data race: thousands of reports in troupe's handlers that only CAF's
# invisible atomics order. With an instrumented CAF they are gone, and what TSan
# still reports is real.
#
# The headers troupe compiles against stay Debian's; the script refuses to build
# unless the source's headers are identical to the installed ones (the ABI must
# match), after the one fix Debian makes to them (receive_buffer.hpp includes
# <limits>). The source comes through apt (`apt-get source`, with a deb-src list
# of the script's own, so the machine's sources need none). Idempotent: does
# nothing when both libraries exist. Takes 15-30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

dest="${1:-build-tsan/caf}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
version="$(dpkg-query -W -f='${source:Version}' libcaf-dev)"  # e.g. 0.17.6-2.1
upstream="${version%%-*}"
libs=(libcaf_core.so."$upstream" libcaf_io.so."$upstream")
if [ -f "$dest/lib/${libs[0]}" ] && [ -f "$dest/lib/${libs[1]}" ]; then
  exit 0
fi
echo "build-caf-tsan: building CAF $upstream with ThreadSanitizer into $dest/lib (once)" >&2

# -- the source, through apt ----------------------------------------------------------
apt_dir="$dest/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dest/src"
codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
echo "deb-src http://deb.debian.org/debian $codename main" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
apt-get "${apt_opts[@]}" update -qq >/dev/null
tarball="actor-framework_${upstream}.orig.tar.gz"
if [ ! -f "$dest/src/$tarball" ]; then
  (cd "$dest/src" && apt-get "${apt_opts[@]}" source --download-only --tar-only -qq \
     "actor-framework=$version" >/dev/null 2>&1) || true
fi
[ -f "$dest/src/$tarball" ] || { echo "build-caf-tsan: apt could not fetch $tarball" >&2; exit 1; }
src="$dest/src/actor-framework-$upstream"
rm -rf "$src"
tar -xzf "$dest/src/$tarball" -C "$dest/src"

# -- the same headers as the installed ones ------------------------------------------
header="$src/libcaf_io/caf/io/network/receive_buffer.hpp"
grep -q '#include <limits>' "$header" || sed -i 's|#include <memory>|#include <limits>\n#include <memory>|' "$header"
for lib in libcaf_core libcaf_io; do
  differences="$(diff -rq -x build_config.hpp "$src/$lib/caf" /usr/include/caf || true)"
  differences="$(grep -v '^Only in /usr/include' <<<"$differences" || true)"
  if [ -n "$differences" ]; then
    echo "build-caf-tsan: the headers of $lib in $tarball differ from /usr/include/caf;" \
         "an instrumented build would not match the installed ABI:" >&2
    echo "$differences" >&2
    exit 1
  fi
done

# -- the build --------------------------------------------------------------------------
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src" -B "$dest/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" "${launcher[@]}" \
  -DCAF_NO_EXAMPLES=ON -DCAF_NO_TOOLS=ON -DCAF_NO_UNIT_TESTS=ON -DCAF_NO_OPENSSL=ON \
  -DCAF_NO_OPENCL=ON -DCAF_NO_PYTHON=ON -DCAF_NO_SUMMARY=ON >/dev/null
cmake --build "$dest/build" -j "${JOBS:-$(nproc)}" --target libcaf_core_shared libcaf_io_shared \
  >"$dest/build.log" 2>&1 || { echo "build-caf-tsan: build failed, see $dest/build.log" >&2; exit 1; }
mkdir -p "$dest/lib"
for l in "${libs[@]}"; do
  cp -L "$(find "$dest/build" -name "$l" | head -n 1)" "$dest/lib/$l"
done
