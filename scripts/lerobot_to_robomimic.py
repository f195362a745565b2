#!/usr/bin/env python3
"""Converts a LeRobot dataset directory to robomimic's HDF5 layout, and back.

  lerobot_to_robomimic.py LEROBOT_DIR OUT.h5             LeRobot (v2.x or v3.0) -> robomimic
  lerobot_to_robomimic.py --reverse IN.h5 LEROBOT_DIR    robomimic -> LeRobot v3.0 (state only)

LeRobot layout read (meta/info.json + parquet tables; every data/**/*.parquet is read, which covers
v2.x's one file per episode, data/chunk-XXX/episode_XXXXXX.parquet, and v3.0's many episodes per
file, data/chunk-XXX/file-XXX.parquet): rows are frames with columns episode_index, frame_index,
"action", "observation.*" (numeric features of info.json), and optionally next.reward, next.done,
next.success. Image and video features are skipped (named on stderr): state observations only.

robomimic layout written: data/demo_i/obs/<key> with key = the feature name without "observation."
("observation.state" -> "state"), actions, rewards (0 when absent), dones (next.done, else 1 at the
last frame), attrs num_samples, success (when next.success exists), total, env_args (JSON naming
the source, its fps and robot_type).

The reverse direction writes LeRobot v3.0: data/chunk-000/file-000.parquet, meta/info.json,
meta/stats.json, meta/tasks.parquet, meta/episodes/chunk-000/file-000.parquet (episode_index,
tasks, length, data/chunk_index, data/file_index, dataset_from_index, dataset_to_index), for
LeRobot's own trainers (the ACT peer). Run in the robot venv (h5py, numpy, pyarrow).
"""
import argparse
import glob
import json
import re
import os
import sys


def fail(msg):
    raise SystemExit(f"lerobot_to_robomimic: {msg}")


def lerobot_to_robomimic(src, out, np, pq, h5py):
    info_path = os.path.join(src, "meta", "info.json")
    if not os.path.isfile(info_path):
        fail(f"'{src}' is not a LeRobot dataset: no meta/info.json")
    with open(info_path) as f:
        info = json.load(f)
    features = info.get("features", {})
    if "action" not in features:
        fail(f"'{info_path}': no 'action' feature")
    obs_features, skipped = [], []
    for name, feat in features.items():
        if not name.startswith("observation."):
            continue
        if feat.get("dtype") in ("image", "video", "string"):
            skipped.append(name)
        else:
            obs_features.append(name)
    if skipped:
        print(f"lerobot_to_robomimic: skipping non-state features {skipped}", file=sys.stderr)
    if not obs_features:
        fail(f"'{info_path}': no numeric observation.* features")
    files = sorted(glob.glob(os.path.join(src, "data", "**", "*.parquet"), recursive=True))
    if not files:
        fail(f"'{src}': no parquet files under data/")
    columns = ["episode_index", "frame_index", "action"] + obs_features
    optional = [c for c in ("next.reward", "next.done", "next.success") if c in features]
    table = {c: [] for c in columns + optional}
    for path in files:
        t = pq.read_table(path)
        for c in columns:
            if c not in t.column_names:
                fail(f"'{path}': missing column '{c}'")
        for c in columns + optional:
            if c in t.column_names:
                table[c].append(t.column(c).to_pylist())
    flat = {c: [x for part in v for x in part] for c, v in table.items() if v}

    def as_rows(values, name):
        a = np.asarray(values, dtype=np.float32)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            fail(f"feature '{name}' has shape {a.shape[1:]}; only vectors are converted")
        return a

    ep = np.asarray(flat["episode_index"], dtype=np.int64)
    frame = np.asarray(flat["frame_index"], dtype=np.int64)
    actions = as_rows(flat["action"], "action")
    obs = {name[len("observation."):]: as_rows(flat[name], name) for name in obs_features}
    for k, a in list(obs.items()) + [("actions", actions)]:
        if not np.all(np.isfinite(a)):
            fail(f"'{src}': non-finite values in {k}")
    episodes = sorted(set(ep.tolist()))
    env_args = {"env_name": info.get("robot_type") or "unknown", "type": 2,
                "env_kwargs": {"fps": info.get("fps"), "source": "lerobot", "lerobot_dir": os.path.abspath(src),
                               "codebase_version": info.get("codebase_version")}}
    tmp = out + ".tmp"
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        total = 0
        for i, e in enumerate(episodes):
            rows = np.nonzero(ep == e)[0]
            rows = rows[np.argsort(frame[rows], kind="stable")]
            T = len(rows)
            g = data.create_group(f"demo_{i}")
            for k, a in obs.items():
                g.create_dataset(f"obs/{k}", data=a[rows])
            g.create_dataset("actions", data=actions[rows])
            rewards = np.asarray(flat["next.reward"], np.float32)[rows] if "next.reward" in flat else np.zeros(T, np.float32)
            g.create_dataset("rewards", data=rewards.reshape(T))
            if "next.done" in flat:
                dones = np.asarray(flat["next.done"], dtype=np.uint8)[rows].reshape(T)
            else:
                dones = np.zeros(T, np.uint8)
                dones[-1] = 1
            g.create_dataset("dones", data=dones)
            g.attrs["num_samples"] = np.int64(T)
            if "next.success" in flat:
                g.attrs["success"] = np.int64(bool(np.any(np.asarray(flat["next.success"])[rows])))
            g.attrs["lerobot_episode_index"] = np.int64(e)
            total += T
        data.attrs["total"] = np.int64(total)
        data.attrs["env_args"] = json.dumps(env_args)
    os.replace(tmp, out)
    print(f"{len(episodes)} episodes, {total} frames, obs keys {sorted(obs)}, action dim {actions.shape[1]} -> {out}")


def parse_feature(spec):
    """'observation.NAME=KEY' or 'observation.NAME=KEY[a:b]' -> (feature, obs key, slice)."""
    m = re.fullmatch(r"(observation\.[A-Za-z0-9_.]+)=([A-Za-z0-9_]+)(?:\[(\d*):(\d*)\])?", spec)
    if not m:
        fail(f"--feature '{spec}': expected observation.NAME=KEY or observation.NAME=KEY[a:b]")
    a = int(m.group(3)) if m.group(3) else None
    b = int(m.group(4)) if m.group(4) else None
    return m.group(1), m.group(2), slice(a, b)


def robomimic_to_lerobot(src, out, fps, task, np, pa, pq, h5py, feature_specs=()):
    with h5py.File(src, "r") as f:
        data = f["data"]
        names = sorted([k for k in data.keys() if k.startswith("demo_")], key=lambda k: int(k[5:]))
        if not names:
            fail(f"'{src}': no demo_N groups under data")
        env_args = json.loads(data.attrs["env_args"]) if "env_args" in data.attrs else {}
        keys = sorted(data[names[0]]["obs"].keys())
        # Default: obs/<key> -> observation.<key>; --feature picks and slices instead (e.g. LeRobot's
        # ACT wants observation.environment_state, and observation.state for the robot's own joints).
        features_of = [parse_feature(s) for s in feature_specs] or [(f"observation.{k}", k, slice(None)) for k in keys]
        for name, key, _ in features_of:
            if key not in keys:
                fail(f"--feature {name}={key}: '{src}' has no obs key '{key}' (it has: {', '.join(keys)})")
        cols = {name: [] for name, _, _ in features_of}
        cols.update({"action": [], "next.reward": [], "next.done": [], "timestamp": [], "frame_index": [],
                     "episode_index": [], "index": [], "task_index": []})
        success, lengths = [], []
        index = 0
        for e, name in enumerate(names):
            g = data[name]
            T = int(g["actions"].shape[0])
            lengths.append(T)
            for name, key, sl in features_of:
                cols[name].append(np.asarray(g["obs"][key], dtype=np.float32).reshape(T, -1)[:, sl])
            cols["action"].append(np.asarray(g["actions"], dtype=np.float32).reshape(T, -1))
            cols["next.reward"].append(np.asarray(g["rewards"], dtype=np.float32).reshape(T))
            cols["next.done"].append(np.asarray(g["dones"]).astype(bool).reshape(T))
            cols["timestamp"].append(np.arange(T, dtype=np.float32) / fps)
            cols["frame_index"].append(np.arange(T, dtype=np.int64))
            cols["episode_index"].append(np.full(T, e, dtype=np.int64))
            cols["index"].append(np.arange(index, index + T, dtype=np.int64))
            cols["task_index"].append(np.zeros(T, dtype=np.int64))
            success.append(bool(g.attrs["success"]) if "success" in g.attrs else None)
            index += T
    cat = {c: np.concatenate(v) for c, v in cols.items()}
    task = task or env_args.get("env_name", "task")

    arrays, features, stats = {}, {}, {}
    for c, a in cat.items():
        if a.ndim == 2:
            arrays[c] = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])
            features[c] = {"dtype": "float32", "shape": [int(a.shape[1])], "names": None}
        else:
            arrays[c] = pa.array(a)
            dtype = {"f": "float32", "i": "int64", "b": "bool"}[a.dtype.kind]
            features[c] = {"dtype": dtype, "shape": [1], "names": None}
        if a.dtype.kind == "f":
            v = a.reshape(len(a), -1).astype(np.float64)
            stats[c] = {"mean": v.mean(0).tolist(), "std": v.std(0).tolist(), "min": v.min(0).tolist(),
                        "max": v.max(0).tolist(), "count": [int(len(a))]}
    os.makedirs(os.path.join(out, "data", "chunk-000"), exist_ok=True)
    os.makedirs(os.path.join(out, "meta", "episodes", "chunk-000"), exist_ok=True)
    pq.write_table(pa.table(arrays), os.path.join(out, "data", "chunk-000", "file-000.parquet"))
    starts = np.cumsum([0] + lengths)
    episodes = {"episode_index": list(range(len(names))), "tasks": [[task]] * len(names), "length": lengths,
                "data/chunk_index": [0] * len(names), "data/file_index": [0] * len(names),
                "dataset_from_index": starts[:-1].tolist(), "dataset_to_index": starts[1:].tolist()}
    if any(s is not None for s in success):
        episodes["success"] = [bool(s) for s in success]
    pq.write_table(pa.table(episodes), os.path.join(out, "meta", "episodes", "chunk-000", "file-000.parquet"))
    pq.write_table(pa.table({"task_index": [0], "task": [task]}), os.path.join(out, "meta", "tasks.parquet"))
    info = {"codebase_version": "v3.0", "robot_type": env_args.get("env_name"), "total_episodes": len(names),
            "total_frames": int(index), "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": fps, "splits": {"train": f"0:{len(names)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None,
            "features": features}
    with open(os.path.join(out, "meta", "info.json"), "w") as f:
        json.dump(info, f, indent=4)
    with open(os.path.join(out, "meta", "stats.json"), "w") as f:
        json.dump(stats, f, indent=4)
    print(f"{len(names)} episodes, {index} frames, features {sorted(features)} -> {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="LeRobot dataset directory (or, with --reverse, a robomimic .h5)")
    p.add_argument("dst", help="robomimic .h5 to write (or, with --reverse, a LeRobot directory)")
    p.add_argument("--reverse", action="store_true", help="robomimic -> LeRobot v3.0")
    p.add_argument("--fps", type=int, default=80, help="with --reverse: frames per second (Meta-World steps at 80 Hz; default %(default)s)")
    p.add_argument("--task", default=None, help="with --reverse: the task string (default: env_args' env_name)")
    p.add_argument("--feature", action="append", default=[], metavar="observation.NAME=KEY[a:b]",
                   help="with --reverse: write obs KEY (optionally columns a:b) as feature observation.NAME; repeatable "
                        "(default: every obs key K as observation.K)")
    a = p.parse_args(argv)
    if a.feature and not a.reverse:
        p.error("--feature applies to --reverse only")
    import h5py
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    if a.reverse:
        if os.path.exists(os.path.join(a.dst, "meta", "info.json")):
            fail(f"'{a.dst}' already holds a LeRobot dataset; remove it first")
        robomimic_to_lerobot(a.src, a.dst, a.fps, a.task, np, pa, pq, h5py, a.feature)
    else:
        lerobot_to_robomimic(a.src, a.dst, np, pq, h5py)
    return 0


if __name__ == "__main__":
    sys.exit(main())
