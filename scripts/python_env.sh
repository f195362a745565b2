#!/usr/bin/env bash
# Prints the path of a Python venv built from the given requirements file, creating it on first use.
# The venv lives outside the clone, keyed by a hash of the requirements, so CI and later sessions reuse it.
# Usage: scripts/python_env.sh python/requirements-test.txt   -> prints /root/.cache/strata/venv-<hash>
set -euo pipefail
req="$1"
hash=$(sha256sum "$req" | cut -c1-16)
root="${STRATA_CACHE:-$HOME/.cache/strata}"
venv="$root/venv-$(basename "$req" .txt)-$hash"
mkdir -p "$root"
# Test processes run in parallel and may all ask at once: one builds, the others wait for it.
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
