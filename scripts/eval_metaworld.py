#!/usr/bin/env python3
"""Closed-loop evaluation of a strata robot policy (or Meta-World's scripted expert) in Meta-World.

Runs N episodes of one Meta-World v3 task, built as scripts/collect_metaworld.py builds it (MT1's
seeded task variations, state observations; its run_episode loop is reused: an episode ends at the
first success or at --max-steps). The policy is strata's, through the Python module `strata`
(python/bindings: strata.Policy(ckpt).act(obs) once per env step, the planner running on the
policy's own clock), with --lerobot a LeRobot ACT checkpoint (scripts/lerobot_act.py; run in the
LeRobot venv), or with --expert the task's scripted expert (the baseline row).

Prints success rate, mean return (reward summed until success or the step limit), mean episode
length and, for strata and ACT, the per-call latency of act() (p50 / p99, microseconds). --json writes them.

The module is found in --module-dir (default: build/python, then build-*/python), or on PYTHONPATH.
Build it with `cmake -S . -B build && cmake --build build --target strata_py` (pybind11-dev).

Run in the robot venv:  $(scripts/python_env.sh python/requirements-robot.txt)/bin/python \\
    scripts/eval_metaworld.py --ckpt runs/mr_reach/checkpoint_final.h5 --task reach-v3 --episodes 50

Evaluation episodes use MT1(task, seed=--seed) and env.reset(seed=seed * 100003 + i): with the
default --seed 1 they are other task variations than collect_metaworld.py's default --seed 0 drew.
"""
import argparse
import glob
import json
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import collect_metaworld  # noqa: E402  (its task_env, start_episode, run_episode and metaworld_version)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="a strata robot checkpoint (strata train on a robot config)")
    src.add_argument("--expert", action="store_true", help="evaluate the task's scripted expert instead")
    src.add_argument("--lerobot", metavar="DIR", help="a LeRobot ACT checkpoint (pretrained_model directory from "
                     "scripts/lerobot_act.py train); run in the LeRobot venv")
    p.add_argument("--task", required=True, help="Meta-World v3 task name, e.g. reach-v3")
    p.add_argument("--episodes", type=int, default=50, help="episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="MT1 seed and reset seeds (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=500, help="episode step limit, at most 500 (default: %(default)s)")
    p.add_argument("--handoff", default=None, choices=["hold", "ensemble", "rtc"],
                   help="act with the planner's chunk through this hand-off policy (default: the controller's action)")
    p.add_argument("--module-dir", default=None, help="directory holding the built strata module")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error(f"--episodes must be >= 1, got {a.episodes}")
    if not 1 <= a.max_steps <= 500:
        p.error(f"--max-steps must be in [1, 500], got {a.max_steps}")
    return a


def import_strata(module_dir):
    # One OpenMP thread unless the caller chose: a one-step policy this small gains nothing from a
    # second thread, and on a loaded machine a barrier waiting for a descheduled thread costs
    # milliseconds (measured: p99 128 ms with the default, 0.13 ms with 1, on 2 busy cores).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dirs = [module_dir] if module_dir else [os.path.join(HERE, "..", "build", "python")] + sorted(
        glob.glob(os.path.join(HERE, "..", "build-*", "python")))
    for d in dirs:
        if d and glob.glob(os.path.join(d, "strata*.so")):
            sys.path.insert(0, os.path.abspath(d))
            break
    try:
        import strata
    except ImportError as e:
        raise SystemExit(f"eval_metaworld: cannot import the strata module ({e}); build the strata_py target "
                         "(needs pybind11-dev) and pass --module-dir BUILD/python") from e
    return strata


class StrataAgent:
    """collect_metaworld.run_episode's policy interface (get_action) over strata.Policy."""

    def __init__(self, policy, np):
        self.policy, self.np = policy, np

    def get_action(self, obs):
        return self.policy.act(self.np.asarray(obs, dtype=self.np.float32))


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
    import numpy as np
    import metaworld
    import metaworld.policies as policies

    mt1, env = collect_metaworld.task_env(args.task, args.seed, args.max_steps, metaworld, policies, "eval_metaworld")
    policy = act = None
    if args.expert:
        agent = policies.ENV_POLICY_MAP[args.task]()
    elif args.lerobot:
        import lerobot_act
        agent = act = lerobot_act.ActAgent(args.lerobot, np)
        if act.obs_dim > env.observation_space.shape[0]:
            raise SystemExit(f"eval_metaworld: the ACT inputs need {act.obs_dim} observation floats, "
                             f"{args.task} gives {env.observation_space.shape[0]}")
    else:
        strata = import_strata(args.module_dir)
        policy = strata.Policy(args.ckpt, handoff=args.handoff)
        if policy.obs_dim != env.observation_space.shape[0]:
            raise SystemExit(f"eval_metaworld: the checkpoint takes {policy.obs_dim} observation floats, "
                             f"{args.task} gives {env.observation_space.shape[0]}")
        agent = StrataAgent(policy, np)

    successes, returns, lengths = [], [], []
    start = time.perf_counter()
    for i in range(args.episodes):
        reset_seed = collect_metaworld.start_episode(env, mt1, args.seed, i)
        if policy is not None:
            policy.reset()
        if act is not None:
            act.reset()
        ep = collect_metaworld.run_episode(env, agent, args.max_steps, 0, reset_seed, np)
        successes.append(bool(ep["success"]))
        returns.append(float(ep["rewards"].sum()))
        lengths.append(len(ep["actions"]))
        if not args.quiet:
            print(f"\r{args.task:<20} episode {i + 1:>4}/{args.episodes}  success {sum(successes)}/{i + 1}  "
                  f"{time.perf_counter() - start:6.1f} s", end="", file=sys.stderr, flush=True)
    if not args.quiet:
        print(file=sys.stderr)
    env.close()

    name = "expert" if args.expert else "lerobot-act" if args.lerobot else "strata"
    res = {"task": args.task, "policy": name, "ckpt": args.ckpt or args.lerobot,
           "handoff": args.handoff, "episodes": args.episodes, "seed": args.seed, "max_steps": args.max_steps,
           "success_rate": float(np.mean(successes)), "mean_return": float(np.mean(returns)),
           "mean_length": float(np.mean(lengths)), "seconds": time.perf_counter() - start,
           "metaworld": collect_metaworld.metaworld_version()}
    lat = None
    if policy is not None:
        lat = np.asarray(policy.latency_us(), dtype=np.float64)
        res.update({"planner_hz": policy.planner_hz, "control_hz": policy.control_hz})
    elif act is not None:
        lat = np.asarray(act.latency, dtype=np.float64)
        res.update({"chunk": act.policy.config.chunk_size, "n_action_steps": act.policy.config.n_action_steps})
    if lat is not None:
        res.update({"calls": int(lat.size), "latency_us_p50": float(np.percentile(lat, 50)),
                    "latency_us_p99": float(np.percentile(lat, 99)), "latency_us_max": float(lat.max())})
    print(f"{'task':<16} {'policy':<12} {'episodes':>8} {'success':>8} {'return':>9} {'steps':>7} {'p50 us':>8} {'p99 us':>8}")
    lat50 = f"{res['latency_us_p50']:8.1f}" if lat is not None else f"{'-':>8}"
    lat99 = f"{res['latency_us_p99']:8.1f}" if lat is not None else f"{'-':>8}"
    print(f"{args.task:<16} {res['policy']:<12} {args.episodes:>8} {100 * res['success_rate']:>7.1f}% "
          f"{res['mean_return']:>9.1f} {res['mean_length']:>7.1f} {lat50} {lat99}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
