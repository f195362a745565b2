#!/usr/bin/env bash
# Builds the libFuzzer targets with Clang in build-fuzz/ and runs one of them.
# Usage: fuzz/run.sh [seconds=120] [target=fuzz_safetensors_header] [extra libFuzzer flags...]
# New inputs go to build-fuzz/corpus/<target>/ (seeded from fuzz/corpus/), so the checked-in seed
# corpus stays small; crashes are written as build-fuzz/crash-*.
set -euo pipefail
secs="${1:-120}"
target="${2:-fuzz_safetensors_header}"
shift $(( $# > 2 ? 2 : $# ))
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"
CXX="${CXX:-$(command -v clang++ || true)}"
CC="${CC:-$(command -v clang || true)}"
if [ -z "$CXX" ] || [ -z "$CC" ]; then
  echo "fuzz/run.sh needs clang (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 1
fi
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CC" \
      -DCMAKE_CXX_COMPILER="$CXX" -DSTRATA_FUZZ=ON -DSTRATA_NATIVE=OFF -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target "$target" -j"$(nproc)"
seeds="$root/fuzz/corpus/${target#fuzz_}"
work="$build/corpus/$target"
dict="$root/fuzz/${target#fuzz_}.dict"
mkdir -p "$work"
cd "$build"
flags=(-max_total_time="$secs" -max_len=4096 -print_final_stats=1)
[ -f "$dict" ] && flags+=(-dict="$dict")
"$build/fuzz/$target" "$work" "$seeds" "${flags[@]}" "$@"
