#!/usr/bin/env bash
# The README's first command: install what is needed, build, train the quickstart hybrid on a
# corpus every Debian machine can install, then sample from it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
scripts/make_corpus.sh
run=runs/quickstart
if ls "$run"/ckpt-*.h5 >/dev/null 2>&1; then resume=--resume; else resume=; fi
./build/strata train experiments/quickstart.yaml $resume "$@"
echo
echo "=== sample ==="
./build/strata generate --ckpt "$run" --prompt "The meaning of life is" --max-tokens 300 --seed 1
