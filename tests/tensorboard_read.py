"""Reads a directory of TensorBoard event files with TensorBoard's own loader and prints, as JSON,
the file_version and every scalar: {"file_version": ..., "scalars": {tag: [[step, value, wall_time], ...]}}.
Used by tests/test_tensorboard.cpp as an independent oracle for our hand-written event files."""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator as ea

acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0})  # 0 = keep every event
acc.Reload()
print(json.dumps({
    "file_version": acc.file_version,
    "scalars": {tag: [[e.step, e.value, e.wall_time] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]},
}))
