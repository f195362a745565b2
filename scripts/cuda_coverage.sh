#!/usr/bin/env bash
# Lines of src/kernels/cuda executed by the emulated CUDA tests: gcov over the strata_cuda objects of
# the emulated, instrumented build (scripts/build.sh emu), after its tests ran. A line counts as
# executed if any translation unit executed it (headers such as common.cuh are compiled into many).
#   scripts/cuda_coverage.sh [BUILD_DIR=build-emu] [--reset] [--min PCT]
# --reset deletes the counters first. Prints one line per file and a total; exits 1 if no counters
# exist, or if the total is under PCT (scripts/test.sh holds the emulated tests to the issue's 90 %).
set -euo pipefail
cd "$(dirname "$0")/.."
build="build-emu"
reset=0
min=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reset) reset=1 ;;
    --min) min="$2"; shift ;;
    *) build="$1" ;;
  esac
  shift
done
objdir="$build/CMakeFiles/strata_cuda.dir/src/kernels/cuda"
if [ ! -d "$objdir" ]; then
  echo "cuda_coverage: no $objdir (configure with scripts/build.sh emu)" >&2
  exit 1
fi
if [ "$reset" = 1 ]; then
  find "$objdir" -name '*.gcda' -delete
  exit 0
fi
objdir="$(cd "$objdir" && pwd)"
shopt -s nullglob
gcdas=("$objdir"/*.gcda)
if [ ${#gcdas[@]} -eq 0 ]; then
  echo "cuda_coverage: no counters in $objdir (run the emulated tests first)" >&2
  exit 1
fi
src="$(pwd)/src/kernels/cuda"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# A translation unit gcov cannot read must not silently leave the total (that would raise the figure).
for g in "${gcdas[@]}"; do
  unit="$(basename "$g" .gcda)"
  if ! (cd "$tmp" && gcov --json-format --stdout -o "$objdir" "$objdir/$unit.o" > "$unit.json" 2>"$unit.err") \
     || [ ! -s "$tmp/$unit.json" ]; then
    echo "cuda_coverage: gcov could not read $unit: $(head -c 300 "$tmp/$unit.err")" >&2
    exit 1
  fi
  rm -f "$tmp/$unit.err"
done
python3 - "$tmp" "$src" "$min" <<'PY'
import json, os, sys
tmp, src, min_pct = sys.argv[1], sys.argv[2], float(sys.argv[3])
lines = {}  # file -> {line: executed}
for name in sorted(os.listdir(tmp)):
    with open(os.path.join(tmp, name)) as f:
        for doc in f.read().splitlines():
            if not doc.strip():
                continue
            data = json.loads(doc)
            for fi in data.get("files", []):
                path = os.path.realpath(os.path.join(data.get("current_working_directory", ""), fi["file"]))
                if not path.startswith(src + os.sep):
                    continue
                d = lines.setdefault(os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.dirname(src)))), {})
                for ln in fi["lines"]:
                    d[ln["line_number"]] = d.get(ln["line_number"], False) or ln["count"] > 0
total = hit = 0
for path in sorted(lines):
    d = lines[path]
    n, h = len(d), sum(d.values())
    total += n
    hit += h
    print(f"{path:45s} {100.0 * h / max(n, 1):6.1f}% of {n:5d} lines")
print(f"{'TOTAL src/kernels/cuda (emulated tests)':45s} {100.0 * hit / max(total, 1):6.1f}% of {total:5d} lines ({hit} executed)")
pct = 100.0 * hit / max(total, 1)
if pct < min_pct:
    print(f"cuda_coverage: {pct:.1f}% is under the required {min_pct:g}%", file=sys.stderr)
    sys.exit(1)
PY
