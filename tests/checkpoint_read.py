"""Dumps a strata checkpoint as h5py sees it, as JSON, for tests/test_checkpoint.cpp: root attributes,
/state attributes, and for every dataset its group, shape, crc32c attribute and values."""
import json
import sys

import h5py

def dump_group(g):
    return {name: {"shape": list(d.shape), "crc32c": int(d.attrs["crc32c"]), "dtype": str(d.dtype),
                   "values": [float(x) for x in d[()].reshape(-1)]} for name, d in g.items()}

with h5py.File(sys.argv[1], "r") as f:
    out = {
        "attrs": {k: (v.decode() if isinstance(v, bytes) else v if isinstance(v, str) else int(v)) for k, v in f.attrs.items()},
        "state": {k: int(v) for k, v in f["state"].attrs.items()},
        "params": dump_group(f["params"]), "m": dump_group(f["optim/m"]), "v": dump_group(f["optim/v"]),
    }
print(json.dumps(out))
