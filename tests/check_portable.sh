#!/usr/bin/env bash
# Checks that a portable build (QBENCH_NATIVE=OFF) runs on any x86-64. The per-ISA translation
# units (object files *_avx2.cc.o, *_avx512.cc.o, *_f16c.cc.o) are entered only after a run-time
# CPU check; everything else must be baseline code. So:
#  1. every function of BINARY that uses an AVX-encoded instruction (VEX/EVEX mnemonics v*,
#     %ymm, %zmm, %k registers) must be defined by a per-ISA object file, and
#  2. no symbol a per-ISA object defines may also be defined by another object file of the build:
#     an inline or template function compiled there with AVX flags could be the copy the linker
#     keeps for baseline callers (the reason the Eigen units rename Eigen's namespace).
# Usage: check_portable.sh BINARY BUILD_DIR
set -euo pipefail
binary=$1
build_dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Code symbols only: data (constant tables such as inline constexpr arrays) is the same bytes
# whichever copy the linker keeps.
defined() { nm --defined-only "$1" 2>/dev/null | awk '$2 ~ /^[TtWw]$/ { print $3 }'; }
: >"$tmp/isa"
: >"$tmp/other"
while IFS= read -r obj; do
  case "$obj" in
    *_avx2.cc.o | *_avx512.cc.o | *_f16c.cc.o) defined "$obj" >>"$tmp/isa" ;;
    *) nm --defined-only "$obj" 2>/dev/null | awk '$2 ~ /^[TWw]$/ { print $3 }' >>"$tmp/other" ;;
  esac
done < <(find "$build_dir" -name '*.o' -not -path '*/CMakeFiles/CMakeScratch/*')
# GCC's clones (f.constprop.0, f.cold, ...) count as f; DW.ref.* are identical exception-handling
# data words, not code.
for f in isa other; do
  sed 's/\..*$//' "$tmp/$f" | grep -v '^DW$' | sort -u >"$tmp/$f.sorted"
  mv "$tmp/$f.sorted" "$tmp/$f"
done
[ -s "$tmp/isa" ] || { echo "check_portable: no per-ISA object files under $build_dir" >&2; exit 2; }
status=0

shared=$(comm -12 "$tmp/isa" "$tmp/other" | grep -v '^_GLOBAL_OFFSET_TABLE_$' || true)
if [ -n "$shared" ]; then
  echo "check_portable: symbols defined both by a per-ISA unit and by baseline code (the linker may keep the AVX copy):" >&2
  echo "$shared" | c++filt | sed 's/^/  /' | head -40 >&2
  status=1
fi

objdump -d --no-show-raw-insn "$binary" | awk '
  /^[0-9a-f]+ <.*>:$/ { sym = substr($2, 2, length($2) - 3); next }
  /^ +[0-9a-f]+:\t/ {
    split($0, parts, "\t"); insn = parts[2]
    if ((insn ~ /^v/ && insn !~ /^verr|^verw/) || insn ~ /%[yz]mm|%k[0-7]/) used[sym] = 1
  }
  END { for (s in used) print s }' | sed 's/\..*$//' | sort -u >"$tmp/avx"
outside=$(comm -23 "$tmp/avx" "$tmp/isa")
if [ -n "$outside" ]; then
  echo "check_portable: $binary runs AVX instructions outside the per-ISA units:" >&2
  echo "$outside" | c++filt | sed 's/^/  /' | head -40 >&2
  status=1
fi
[ "$status" -ne 0 ] || echo "check_portable: $binary: AVX code only in $(wc -l <"$tmp/avx") functions of the per-ISA units"
exit "$status"
