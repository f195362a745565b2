#!/usr/bin/env python3
"""LeRobot's ACT as the peer of strata's robot policies: trained by LeRobot's own trainer on our
Meta-World demonstrations, evaluated in the same closed loop (scripts/eval_metaworld.py --lerobot).

  train   converts a robomimic episodes file to a LeRobot v3.0 dataset (scripts/lerobot_to_robomimic.py
          --reverse) and runs `lerobot-train --policy.type=act` on it with ACT's default configuration
          (chunk 100, dim 512, VAE, lr 1e-5, batch 8) on the CPU for --steps steps; prints and writes
          (--json) the wall time of the trainer process and the checkpoint it saved.

ACT needs an environment state or images: a Meta-World state observation (39 floats) goes in as
observation.environment_state, and its first 4 floats (hand position and gripper, what LeRobot's own
Meta-World env calls agent_pos) as observation.state. ActAgent (used by eval_metaworld.py) feeds the
policy the same way; the mapping is FEATURES, in one place.

Run in the LeRobot venv:  $(scripts/python_env.sh python/requirements-lerobot.txt)/bin/python \\
    scripts/lerobot_act.py train --episodes data/metaworld/reach-v3.h5 --out runs/robot/reach-v3/act --steps 500
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# observation feature <- obs key [columns]: the converter's --feature specs and ActAgent's inputs.
FEATURES = {"observation.state": ("state", slice(0, 4)), "observation.environment_state": ("state", slice(None))}


def feature_specs():
    out = []
    for name, (key, sl) in FEATURES.items():
        cols = "" if sl == slice(None) else f"[{sl.start or ''}:{sl.stop if sl.stop is not None else ''}]"
        out.append(f"{name}={key}{cols}")
    return out


class ActAgent:
    """collect_metaworld.run_episode's policy interface (get_action) over a trained LeRobot ACT
    checkpoint (its pretrained_model directory): LeRobot's own preprocessor (normalisation),
    ACTPolicy.select_action (a new chunk every n_action_steps calls, as lerobot-eval runs it) and
    postprocessor (unnormalisation). Keeps each call's latency in microseconds."""

    def __init__(self, pretrained_dir, np):
        import torch
        from lerobot.policies.act.modeling_act import ACTPolicy
        from lerobot.policies.factory import make_pre_post_processors
        self.np, self.torch = np, torch
        torch.set_num_threads(1)  # as strata's policy in the same loop: one thread per act() call
        self.policy = ACTPolicy.from_pretrained(pretrained_dir)
        self.policy.eval()
        self.pre, self.post = make_pre_post_processors(self.policy.config, pretrained_path=pretrained_dir)
        self.obs_dim = max((sl.stop or 0) for _, sl in FEATURES.values())
        self.latency = []

    def reset(self):
        self.policy.reset()
        self.pre.reset()
        self.post.reset()

    def get_action(self, obs):
        t0 = time.perf_counter()
        obs = self.np.asarray(obs, dtype=self.np.float32)
        batch = {name: self.torch.from_numpy(obs[sl].copy()) for name, (_, sl) in FEATURES.items()}
        with self.torch.inference_mode():
            action = self.post(self.policy.select_action(self.pre(batch)))
        out = action.squeeze(0).cpu().numpy()
        self.latency.append((time.perf_counter() - t0) * 1e6)
        return out


def checkpoints(out_dir):
    """[(step, pretrained_model dir)] of a training run, oldest first."""
    root = os.path.join(out_dir, "train", "checkpoints")
    steps = sorted((d for d in os.listdir(root) if d.isdigit()), key=int) if os.path.isdir(root) else []
    if not steps:
        raise SystemExit(f"lerobot_act: no checkpoint under {root}")
    return [(int(d), os.path.join(root, d, "pretrained_model")) for d in steps]


def checkpoint_seconds(log_path, start_clock):
    """{step: seconds since the trainer started} from lerobot-train's 'Checkpoint policy after step N'
    log lines (their local date and time, 1 s resolution, against the local clock at the start)."""
    import datetime
    import re
    out = {}
    for line in open(log_path, errors="replace"):
        m = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \S+ Checkpoint policy after step (\d+)", line)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            out[int(m.group(2))] = max(0.0, (t - start_clock).total_seconds())
    return out


def train(args):
    dataset = os.path.join(args.out, "dataset")
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    subprocess.run([sys.executable, os.path.join(HERE, "lerobot_to_robomimic.py"), "--reverse", args.episodes, dataset]
                   + [f"--feature={s}" for s in feature_specs()], check=True)
    cmd = [sys.executable, "-m", "lerobot.scripts.lerobot_train", f"--dataset.repo_id=local/{os.path.basename(args.out)}",
           f"--dataset.root={dataset}", "--policy.type=act", "--policy.device=cpu", "--policy.push_to_hub=false",
           f"--output_dir={os.path.join(args.out, 'train')}", f"--steps={args.steps}",
           f"--save_freq={args.save_every or args.steps}",
           f"--log_freq={max(1, min(100, args.steps // 10))}", "--eval_freq=0", "--wandb.enable=false",
           f"--num_workers={args.workers}", f"--seed={args.seed}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    log = os.path.join(args.out, "train.log")
    print(f"lerobot_act: {' '.join(cmd)}\n  log: {log}", file=sys.stderr)
    import datetime
    start_clock = datetime.datetime.now().replace(microsecond=0)
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"lerobot_act: lerobot-train failed (exit {rc}); the end of {log}:\n{tail}")
    ckpts = checkpoints(args.out)
    # The optimizer state (~300 MB each) is only for resuming LeRobot's run; evaluation needs the model.
    for _, c in ckpts:
        shutil.rmtree(os.path.join(os.path.dirname(c), "training_state"), ignore_errors=True)
    at = checkpoint_seconds(log, start_clock)
    step, ckpt = ckpts[-1]
    res = {"policy": "lerobot-act", "episodes": args.episodes, "steps": step, "batch": 8, "train_seconds": seconds,
           "ckpt": ckpt, "lerobot": version("lerobot"), "torch": version("torch"),
           "checkpoints": [{"step": s, "ckpt": c, "seconds": at.get(s)} for s, c in ckpts]}
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


def version(pkg):
    from importlib.metadata import version as v
    return v(pkg)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="convert episodes and train ACT with lerobot-train")
    t.add_argument("--episodes", required=True, help="robomimic HDF5 episodes (scripts/collect_metaworld.py)")
    t.add_argument("--out", required=True, help="output directory (replaced): dataset/, train/, train.log")
    t.add_argument("--steps", type=int, default=500, help="lerobot-train steps, batch 8 (default: %(default)s; ACT's own default is 100000)")
    t.add_argument("--save-every", type=int, default=0,
                   help="also keep a checkpoint every N steps (for success against training time; default: only the last)")
    t.add_argument("--workers", type=int, default=0, help="data loader workers (default: %(default)s: in-process)")
    t.add_argument("--seed", type=int, default=1000, help="lerobot-train seed (default: %(default)s, its own default)")
    t.add_argument("--json", default=None, help="write the result here")
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    return train(a)


if __name__ == "__main__":
    sys.exit(main())
