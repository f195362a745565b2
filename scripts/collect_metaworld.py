#!/usr/bin/env python3
"""Expert demonstrations from Meta-World (PyPI metaworld 3.1.1), written in robomimic's HDF5 layout.

For each task, N episodes of Meta-World's own scripted expert (metaworld.policies) on MT1's seeded
task variations (goal/object positions), state observations (39 floats). One file per task:

  OUT/<task>.h5
    /data                 attrs: total, env_args (JSON: task, seed, expert success rate, ...),
                                 expert_success_rate (float)
    /data/demo_i          attrs: num_samples, success (0/1: info["success"] was reached)
    /data/demo_i/obs/state  float32 [T, 39]   the observation the action was chosen from
    /data/demo_i/actions    float32 [T, 4]    the expert's action, clipped to the env's [-1, 1]
    /data/demo_i/rewards    float32 [T]
    /data/demo_i/dones      uint8   [T]       1 at the last step

An episode ends --steps-after-success steps after the first success, or at --max-steps (failure).
Failed episodes are kept (success=0) so that the file says what the expert achieved; a trainer can
drop them by the success attribute. Deterministic given --seed: episode i of a task uses MT1's task
variation i mod 50 (MT1 built with --seed) and env.reset(seed=seed * 100003 + i).

Run in the robot venv:  $(scripts/python_env.sh python/requirements-robot.txt)/bin/python \\
    scripts/collect_metaworld.py --out data/metaworld --episodes 50
"""
import argparse
import json
import os
import sys
import time
import warnings

DEFAULT_TASKS = ["reach-v3", "push-v3", "pick-place-v3", "drawer-open-v3", "button-press-v3"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory: one <task>.h5 per task")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated Meta-World v3 task names (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per task (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds MT1's task variations and every reset (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=500, help="episode step limit, at most the env's 500 (default: %(default)s)")
    p.add_argument("--steps-after-success", type=int, default=0,
                   help="steps recorded after the first success, e.g. to learn to hold still (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error(f"--episodes must be >= 1, got {a.episodes}")
    if not 1 <= a.max_steps <= 500:
        p.error(f"--max-steps must be in [1, 500], got {a.max_steps}")
    if a.steps_after_success < 0:
        p.error(f"--steps-after-success must be >= 0, got {a.steps_after_success}")
    return a


def run_episode(env, policy, max_steps, steps_after_success, seed, np):
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [], [], []
    success_at = None
    for t in range(max_steps):
        action = np.clip(policy.get_action(obs), env.action_space.low, env.action_space.high).astype(np.float32)
        observations.append(np.asarray(obs, dtype=np.float32))
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        if success_at is None and float(info.get("success", 0.0)) > 0:
            success_at = t
        if success_at is not None and t - success_at >= steps_after_success:
            break
        if terminated or truncated:
            break
    T = len(actions)
    dones = np.zeros(T, dtype=np.uint8)
    dones[-1] = 1
    return {"obs": np.stack(observations), "actions": np.stack(actions), "rewards": np.asarray(rewards, dtype=np.float32),
            "dones": dones, "success": success_at is not None}


def task_env(task, seed, max_steps, metaworld, policies, prog):
    """MT1(task, seed) and its environment, capped at max_steps; a task without a scripted expert is
    refused (eval_metaworld.py builds its environment here too, so both see the same variations)."""
    if task not in policies.ENV_POLICY_MAP:
        raise SystemExit(f"{prog}: no scripted policy for task '{task}'; metaworld {metaworld_version()} has: "
                         + ", ".join(sorted(policies.ENV_POLICY_MAP)))
    mt1 = metaworld.MT1(task, seed=seed)
    env = mt1.train_classes[task]()
    env.max_path_length = min(env.max_path_length, max_steps)
    return mt1, env


def start_episode(env, mt1, seed, i):
    """Episode i: MT1's task variation i mod 50; returns the reset seed run_episode takes."""
    env.set_task(mt1.train_tasks[i % len(mt1.train_tasks)])
    return seed * 100003 + i


def collect_task(task, args, np, metaworld, policies):
    mt1, env = task_env(task, args.seed, args.max_steps, metaworld, policies, "collect_metaworld")
    policy = policies.ENV_POLICY_MAP[task]()
    episodes = []
    start = time.perf_counter()
    for i in range(args.episodes):
        reset_seed = start_episode(env, mt1, args.seed, i)
        episodes.append(run_episode(env, policy, args.max_steps, args.steps_after_success, reset_seed, np))
        if not args.quiet:
            ok = sum(e["success"] for e in episodes)
            print(f"\r{task:<20} episode {i + 1:>4}/{args.episodes}  success {ok}/{i + 1}  "
                  f"{time.perf_counter() - start:6.1f} s", end="", file=sys.stderr, flush=True)
    if not args.quiet:
        print(file=sys.stderr)
    env.close()
    return episodes, time.perf_counter() - start


def metaworld_version():
    from importlib.metadata import version
    return version("metaworld")


def write_task(path, task, episodes, args, seconds, h5py, np):
    rate = sum(e["success"] for e in episodes) / len(episodes)
    env_args = {
        "env_name": task,
        "type": 2,  # robomimic's EnvType.GYM_TYPE: a gymnasium environment
        "env_kwargs": {"benchmark": "MT1", "seed": args.seed, "max_steps": args.max_steps,
                       "steps_after_success": args.steps_after_success, "observation": "state"},
        "source": "metaworld.policies scripted expert",
        "metaworld_version": metaworld_version(),
        "episodes": len(episodes),
        "expert_success_rate": rate,
        "mean_length": float(np.mean([len(e["actions"]) for e in episodes])),
        "collect_seconds": round(seconds, 3),
    }
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        total = 0
        for i, e in enumerate(episodes):
            g = data.create_group(f"demo_{i}")
            g.create_dataset("obs/state", data=e["obs"])
            g.create_dataset("actions", data=e["actions"])
            g.create_dataset("rewards", data=e["rewards"])
            g.create_dataset("dones", data=e["dones"])
            g.attrs["num_samples"] = np.int64(len(e["actions"]))
            g.attrs["success"] = np.int64(e["success"])
            total += len(e["actions"])
        data.attrs["total"] = np.int64(total)
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["expert_success_rate"] = float(rate)
    os.replace(tmp, path)
    return env_args


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
    import h5py
    import numpy as np
    import metaworld
    import metaworld.policies as policies

    os.makedirs(args.out, exist_ok=True)
    rows = []
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        episodes, seconds = collect_task(task, args, np, metaworld, policies)
        path = os.path.join(args.out, f"{task}.h5")
        info = write_task(path, task, episodes, args, seconds, h5py, np)
        rows.append((task, len(episodes), info["expert_success_rate"], info["mean_length"], seconds, path))
    print(f"{'task':<20} {'episodes':>8} {'expert success':>15} {'mean steps':>10} {'seconds':>8}  file")
    for task, n, rate, mean_len, seconds, path in rows:
        print(f"{task:<20} {n:>8} {100 * rate:>14.1f}% {mean_len:>10.1f} {seconds:>8.1f}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
