#!/usr/bin/env python3
"""Meta-World end to end: demonstrations, training, closed-loop evaluation and the success table.

  train   collect expert demonstrations for every task that has none (scripts/collect_metaworld.py),
          then train each --policies entry on each task, timing the trainer:
            multirate   strata, experiments/robot/metaworld_multirate.yaml (planner 10 Hz, controller 80 Hz)
            singlerate  strata, experiments/robot/metaworld_singlerate.yaml (the planner's size at 80 Hz)
            act         LeRobot ACT, its default configuration, lerobot-train for --act-steps steps
                        (scripts/lerobot_act.py; needs the LeRobot venv)
  eval    the expert and every trained policy in closed loop (scripts/eval_metaworld.py, --eval-episodes
          episodes on task variations other than the demonstrations'), plus, for multirate, the planner
          alone at 10 Hz acting through its chunk (hand-off `hold`): the planner-size policy at 10 Hz
  control with --control-seconds S > 0: `strata control bench` on the first task's multi-rate
          checkpoint at a 1 kHz controller with the planner at 10 Hz, and its single-rate checkpoint
          in-line at 1 kHz: the latency table
  table   print the success, training-time and latency tables from RUNS/results.json
  all     train, eval, control, table

Everything lands in --runs (default runs/robot): <task>/<policy>/ (strata run directories, ACT's
output), logs, and results.json, which each step updates (a rerun of `eval` or `table` reuses what
is there; `train` retrains only what has no result unless --force).

Both trainers (strata's and lerobot-train) run with --threads threads (OMP_NUM_THREADS, which torch
honours too; default 1: one core each, so the comparison does not depend on how each library uses
a second core, and other load on the machine slows them alike); evaluation runs one thread per
policy call.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TASKS = ["reach-v3", "push-v3", "pick-place-v3", "drawer-open-v3", "button-press-v3"]
POLICIES = ["multirate", "singlerate", "act"]
LABELS = {"expert": "expert (scripted)", "multirate": "strata multi-rate", "multirate-planner10hz":
          "planner alone at 10 Hz", "singlerate": "strata single-rate", "act": "LeRobot ACT"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["train", "eval", "control", "table", "all"])
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated Meta-World tasks (default: %(default)s)")
    p.add_argument("--policies", default="multirate", help=f"comma-separated, of {','.join(POLICIES)} (default: %(default)s)")
    p.add_argument("--data", default="data/metaworld", help="demonstrations directory (default: %(default)s)")
    p.add_argument("--demos", type=int, default=50, help="expert demonstrations per task (default: %(default)s)")
    p.add_argument("--runs", default="runs/robot", help="output directory (default: %(default)s)")
    p.add_argument("--build", default="build", help="strata build directory: strata binary and python/ module (default: %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=50, help="closed-loop episodes per task and policy (default: %(default)s)")
    p.add_argument("--act-steps", type=int, default=250, help="lerobot-train steps for ACT (batch 8; default: %(default)s)")
    p.add_argument("--act-save-every", type=int, default=0,
                   help="also keep and evaluate ACT's checkpoint every N steps: its success against training time (default: off)")
    p.add_argument("--control-seconds", type=float, default=0, help="control stage length per run; 0 skips it (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="threads of each trainer (default: %(default)s)")
    p.add_argument("--spin-us", type=float, default=300,
                   help="control stage: busy-wait this long before each 1 ms tick (strata control bench --spin-us; default: %(default)s)")
    p.add_argument("--force", action="store_true", help="train again what already has a result")
    a = p.parse_args(argv)
    a.tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    a.policies = [x.strip() for x in a.policies.split(",") if x.strip()]
    for x in a.policies:
        if x not in POLICIES:
            p.error(f"--policies: unknown policy '{x}'; choose from {', '.join(POLICIES)}")
    if a.eval_episodes < 1 or a.demos < 1 or a.act_steps < 1 or a.threads < 1:
        p.error("--eval-episodes, --demos, --act-steps and --threads must be >= 1")
    return a


class Results:
    """RUNS/results.json: {task: {row: {...}}}, rewritten atomically after every change."""

    def __init__(self, path):
        self.path = path
        self.data = json.load(open(path)) if os.path.exists(path) else {}

    def get(self, task, row):
        return self.data.get(task, {}).get(row)

    def update(self, task, row, values):
        self.data.setdefault(task, {}).setdefault(row, {}).update(values)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)


def run_logged(cmd, log, env=None):
    env = env or os.environ
    print(f"  $ {' '.join(cmd)}   (log: {log})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        with open(log) as f:
            tail = "".join(f.readlines()[-20:])
        raise SystemExit(f"robot_suite: failed (exit {rc}): {' '.join(cmd)}\n{tail}")
    return seconds


def shown(path):
    """A path relative to the repository when inside it (as the logs and results.json show it), else absolute."""
    path = os.path.abspath(os.path.join(ROOT, path))
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def newest_ckpt(run_dir):
    ckpts = sorted(f for f in os.listdir(run_dir) if f.startswith("ckpt-") and f.endswith(".h5"))
    if not ckpts:
        raise SystemExit(f"robot_suite: no checkpoint in {run_dir}")
    return os.path.join(run_dir, ckpts[-1])


def collect(args):
    missing = [t for t in args.tasks if not os.path.exists(os.path.join(ROOT, args.data, f"{t}.h5"))]
    if missing:
        print(f"collecting {args.demos} expert demonstrations for {', '.join(missing)}", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(HERE, "collect_metaworld.py"), "--out", args.data, "--tasks",
                        ",".join(missing), "--episodes", str(args.demos), "--quiet"], check=True, cwd=ROOT)


def train(args, res):
    collect(args)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    strata = os.path.join(ROOT, args.build, "strata")
    for task in args.tasks:
        episodes = os.path.join(args.data, f"{task}.h5")
        for pol in args.policies:
            if res.get(task, pol) and "train_seconds" in res.get(task, pol) and not args.force:
                continue
            out = os.path.join(args.runs, task, pol)
            log = os.path.join(ROOT, args.runs, task, f"{pol}-train.log")
            os.makedirs(os.path.dirname(log), exist_ok=True)
            print(f"[{task}] training {LABELS[pol]}", file=sys.stderr, flush=True)
            if pol == "act":
                js = os.path.join(ROOT, args.runs, task, "act-train.json")
                run_logged([sys.executable, os.path.join(HERE, "lerobot_act.py"), "train", "--episodes", episodes,
                            "--out", out, "--steps", str(args.act_steps), "--save-every", str(args.act_save_every),
                            "--json", js], log, env)
                info = json.load(open(js))
                res.update(task, pol, {"train_seconds": info["train_seconds"], "ckpt": info["ckpt"],
                                       "train_steps": info["steps"], "checkpoints": info["checkpoints"]})
            else:
                subprocess.run(["rm", "-rf", os.path.join(ROOT, out)], check=True)
                seconds = run_logged([strata, "train", f"experiments/robot/metaworld_{pol}.yaml",
                                      f"robot.data.path={episodes}", f"train.run_dir={out}"], log, env)
                ckpt = newest_ckpt(os.path.join(ROOT, out))
                res.update(task, pol, {"train_seconds": seconds, "ckpt": shown(ckpt),
                                       "train_steps": int(os.path.basename(ckpt)[5:-3])})
            print(f"[{task}] {LABELS[pol]}: {res.get(task, pol)['train_seconds']:.1f} s", file=sys.stderr, flush=True)


def evaluate(args, res):
    for task in args.tasks:
        rows = [("expert", ["--expert"])]
        for pol in args.policies:
            r = res.get(task, pol)
            if not r or "ckpt" not in r:
                print(f"[{task}] {LABELS[pol]}: not trained, not evaluated", file=sys.stderr)
                continue
            if pol == "act":
                rows.append((pol, ["--lerobot", r["ckpt"]]))
                for c in r.get("checkpoints", [])[:-1]:  # the earlier ones, with --act-save-every
                    rows.append((f"act@{c['step']}", ["--lerobot", c["ckpt"]]))
            else:
                rows.append((pol, ["--ckpt", r["ckpt"], "--module-dir", os.path.join(args.build, "python")]))
                if pol == "multirate":
                    rows.append(("multirate-planner10hz", ["--ckpt", r["ckpt"], "--handoff", "hold",
                                                           "--module-dir", os.path.join(args.build, "python")]))
        for row, extra in rows:
            js = os.path.join(ROOT, args.runs, task, f"{row}-eval.json")
            os.makedirs(os.path.dirname(js), exist_ok=True)
            print(f"[{task}] closed loop: {label(row)}", file=sys.stderr, flush=True)
            run_logged([sys.executable, os.path.join(HERE, "eval_metaworld.py"), "--task", task, "--episodes",
                        str(args.eval_episodes), "--json", js, "--quiet"] + extra,
                       os.path.join(ROOT, args.runs, task, f"{row}-eval.log"))
            e = json.load(open(js))
            res.update(task, row, {k: e[k] for k in ("success_rate", "mean_return", "mean_length", "episodes")
                                   if k in e} | {k: e[k] for k in e if k.startswith("latency_us")})


def control(args, res):
    if args.control_seconds <= 0:
        return
    task = args.tasks[0]
    strata = os.path.join(ROOT, args.build, "strata")
    for pol, extra in (("multirate", ["--control-hz", "1000", "--planner-hz", "10"]),
                       ("singlerate", ["--control-hz", "1000", "--single-rate"])):
        r = res.get(task, pol)
        if not r or "ckpt" not in r:
            continue
        out = os.path.join(ROOT, args.runs, task, f"{pol}-control")
        print(f"[{task}] strata control bench: {LABELS[pol]} at 1 kHz, {args.control_seconds:g} s", file=sys.stderr, flush=True)
        run_logged([strata, "control", "bench", r["ckpt"], "--seconds", str(args.control_seconds), "--out", out,
                    "--spin-us", str(args.spin_us)] + extra,
                   out + ".log")
        recs = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
        res.update(task, f"{pol}-control", {"records": recs})


def label(row):
    return f"LeRobot ACT at step {row[4:]}" if row.startswith("act@") else LABELS[row]


def pct(x):
    return f"{100 * x:.0f}%" if x is not None else "-"


def task_table(args, res, title, rows, key, cell):
    """A markdown table, one line per task and one column per row of results that has `key` for some
    task; cell(values) formats a cell, "-" where a task has no such result. Nothing when no row has it."""
    present = [r for r in rows if any(key in (res.get(t, r) or {}) for t in args.tasks)]
    if not present:
        return
    print(f"\n{title}\n")
    print("| task | " + " | ".join(LABELS[r] for r in present) + " |")
    print("|---|" + "---:|" * len(present))
    for t in args.tasks:
        cells = [cell(res.get(t, r)) if key in (res.get(t, r) or {}) else "-" for r in present]
        print(f"| {t} | " + " | ".join(cells) + " |")


def table(args, res):
    task_table(args, res, "Closed-loop success in Meta-World (state observations; "
               f"{args.eval_episodes} episodes per task on variations the demonstrations did not use)",
               ["expert", "multirate", "multirate-planner10hz", "singlerate", "act"], "success_rate",
               lambda v: pct(v["success_rate"]))
    task_table(args, res, f"Training wall time on this machine ({args.threads} thread(s) per trainer; seconds, steps in brackets)",
               ["multirate", "singlerate", "act"], "train_seconds",
               lambda v: f"{v['train_seconds']:.0f} ({v['train_steps']})")
    task_table(args, res, "Latency of one policy call in the closed loop (µs, p50 / p99 over the task's calls; one thread)",
               ["multirate", "multirate-planner10hz", "singlerate", "act"], "latency_us_p50",
               lambda v: f"{v['latency_us_p50']:.0f} / {v['latency_us_p99']:.0f}")
    curve = [(t, res.get(t, "act")) for t in args.tasks if len((res.get(t, "act") or {}).get("checkpoints", [])) > 1]
    if curve:
        print("\nLeRobot ACT: closed-loop success against its training time\n")
        print("| task | step | training time (s) | success |")
        print("|---|---:|---:|---:|")
        for t, a in curve:
            for c in a["checkpoints"]:
                row = res.get(t, "act" if c["step"] == a["train_steps"] else f"act@{c['step']}") or {}
                secs = a["train_seconds"] if c["step"] == a["train_steps"] else c.get("seconds")
                print(f"| {t} | {c['step']} | {secs:.0f} | {pct(row.get('success_rate'))} |" if secs is not None else
                      f"| {t} | {c['step']} | - | {pct(row.get('success_rate'))} |")
    for t in args.tasks:
        ctl = [(r, res.get(t, f"{r}-control")) for r in ("multirate", "singlerate") if res.get(t, f"{r}-control")]
        if not ctl:
            continue
        print(f"\nReal-time loop (`strata control bench`, {t}, controller at 1 kHz, --spin-us {args.spin_us:g})\n")
        print("| policy | latency p50 / p99 / p99.9 / max (µs) | jitter p99 (µs) | deadline misses (compute / late wake) "
              "| host CPU steal (ms) | planner p50 / p99 (ms) |")
        print("|---|---|---|---|---|---|")
        for r, v in ctl:
            c = next((x for x in reversed(v["records"]) if x.get("kind") == "controller"), {})
            pl = next((x for x in reversed(v["records"]) if x.get("kind") == "planner"), {})
            lat, jit = c.get("latency_us", {}), c.get("jitter_us", {})
            plan = pl.get("latency_ms", {}) if r == "multirate" else {}
            setup = next((x for x in reversed(v["records"]) if x.get("kind") == "setup"), {})
            steal = setup.get("host_steal_ms", -1)
            print(f"| {LABELS[r]} | {lat.get('p50', 0):.1f} / {lat.get('p99', 0):.1f} / {lat.get('p99.9', 0):.1f} / "
                  f"{lat.get('max', 0):.0f} | {jit.get('p99', 0):.1f} | {c.get('deadline_misses', '-')} / {c.get('ticks', '-')} "
                  f"({c.get('misses_compute', '-')} / {c.get('misses_late_wake', '-')}) | "
                  + (f"{steal:.0f}" if steal is not None and steal >= 0 else "-") + " | "
                  + (f"{plan.get('p50', 0):.1f} / {plan.get('p99', 0):.1f}" if plan else "-") + " |")


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(os.path.join(ROOT, args.runs), exist_ok=True)
    res = Results(os.path.join(ROOT, args.runs, "results.json"))
    if args.stage in ("train", "all"):
        train(args, res)
    if args.stage in ("eval", "all"):
        evaluate(args, res)
    if args.stage in ("control", "all"):
        control(args, res)
    if args.stage in ("table", "eval", "all"):
        table(args, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
