"""Reads the TensorBoard HParams plugin data of every run under a directory with TensorBoard's own
loader (EventMultiplexer) and the plugin's parsers, and prints, as JSON:
{"runs": {run: {"experiment": {"hparams": [[name, type]], "metrics": [tag]},
                "start": {"hparams": {name: value}, "group": str}, "end": {"status": str}}}}
Used by tests/test_sweep.cpp as an independent oracle for our hand-written hparams summaries."""
import json
import sys

from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
from tensorboard.plugins.hparams import api_pb2, metadata

mux = pem.EventMultiplexer()
mux.AddRunsFromDirectory(sys.argv[1])
mux.Reload()
out = {}
for run, tags in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
    r = {}
    for tag, content in tags.items():
        if tag == metadata.EXPERIMENT_TAG:
            e = metadata.parse_experiment_plugin_data(content)
            r["experiment"] = {
                "hparams": [[h.name, api_pb2.DataType.Name(h.type)] for h in e.hparam_infos],
                "metrics": [m.name.tag for m in e.metric_infos],
            }
        elif tag == metadata.SESSION_START_INFO_TAG:
            s = metadata.parse_session_start_info_plugin_data(content)
            vals = {}
            for k, v in s.hparams.items():
                kind = v.WhichOneof("kind")
                vals[k] = getattr(v, kind)
            r["start"] = {"hparams": vals, "group": s.group_name, "start_time": s.start_time_secs}
        elif tag == metadata.SESSION_END_INFO_TAG:
            s = metadata.parse_session_end_info_plugin_data(content)
            r["end"] = {"status": api_pb2.Status.Name(s.status), "end_time": s.end_time_secs}
    out[run] = r
# What the HPARAMS tab itself is built from: the plugin backend over TensorBoard's data provider.
backend = None
try:
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    provider = data_provider.MultiplexerDataProvider(mux, sys.argv[1])
    ctx = context.RequestContext()
    bc = backend_context.Context(base_plugin.TBContext(data_provider=provider, logdir=sys.argv[1]))
    exp = bc.experiment_from_metadata(ctx, "", True, bc.hparams_metadata(ctx, ""), None)
    backend = {"hparams": sorted(h.name for h in exp.hparam_infos), "metrics": sorted(m.name.tag for m in exp.metric_infos)}
except Exception as e:  # an API change in a future TensorBoard: report it, the parsed data above still counts
    backend = {"error": repr(e)}
print(json.dumps({"runs": out, "backend": backend}))
