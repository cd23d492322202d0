#!/usr/bin/env bash
# Installs qbench's build dependencies from Debian 12's packages (only those missing) and builds
# into build/. Safe to run again: it installs nothing that is already there and rebuilds only
# what changed. Usage: scripts/setup.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build git pkg-config
  libeigen3-dev libtbb-dev nlohmann-json3-dev libboost-program-options-dev
  libpcre2-dev libgtest-dev libgmock-dev googletest libbenchmark-dev python3 python3-matplotlib)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=${QBENCH_JOBS:-2}
# Ninja for a new build folder (it starts compiling a target's files before the libraries it links
# are finished, which keeps both cores busy); a folder configured earlier keeps its generator.
generator=()
[ -f build/CMakeCache.txt ] || generator=(-G Ninja)
cmake "${generator[@]}" -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$jobs"
echo "setup: built build/harness/qbench"
