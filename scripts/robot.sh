#!/usr/bin/env bash
# The README's robotics commands (docs/robotics.md):
#   scripts/robot.sh train   # packages, build, Meta-World venv, expert demonstrations, train the multi-rate policy per task
#   scripts/robot.sh table   # closed-loop evaluation of the expert and each trained policy, then the success table
# Any other scripts/robot_suite.py stage and option passes through (scripts/robot.sh --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "-h" ] && [ "${1:-}" != "--help" ]; then
  scripts/deps.sh
  scripts/build.sh release
fi
py="$(scripts/python_env.sh python/requirements-robot.txt)/bin/python"
stage="${1:-}"
if [ "$stage" = table ]; then shift; set -- eval "$@"; fi
exec "$py" scripts/robot_suite.py "$@"
