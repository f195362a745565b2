#!/usr/bin/env bash
# strata's robot policies against their peers, in one run (issue 10): on each Meta-World task, the
# scripted expert, strata multi-rate (planner 10 Hz + controller 80 Hz), the planner alone at 10 Hz,
# strata single-rate (the planner's size at 80 Hz) and LeRobot ACT (its default configuration,
# trained by lerobot-train on the same demonstrations), all evaluated in the same closed loop; then
# the training times, per-call latencies, and the 1 kHz real-time loop table. Options pass through to
# scripts/robot_suite.py (e.g. --tasks reach-v3,push-v3 --act-steps 300 --eval-episodes 50).
#   bench/robot_peers.sh                      # all five tasks; results in runs/robot-peers/results.json
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
py="$(scripts/python_env.sh python/requirements-lerobot.txt)/bin/python"
exec "$py" scripts/robot_suite.py all --policies multirate,singlerate,act --act-save-every 125 --control-seconds 60 --runs runs/robot-peers "$@"
