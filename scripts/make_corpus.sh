#!/usr/bin/env bash
# Writes data/corpus.txt, the quickstart's training text: the fortune cookie databases Debian ships
# (packages fortunes, fortunes-min), about 2.5 MB of English prose, jokes and quotations.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/corpus.txt
[ -s "$out" ] && exit 0
mkdir -p data
src=/usr/share/games/fortunes
[ -d "$src" ] || { echo "error: $src missing; run scripts/deps.sh (package 'fortunes')" >&2; exit 1; }
find "$src" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort | xargs cat | tr -d '\r' > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c < "$out") bytes)" >&2
