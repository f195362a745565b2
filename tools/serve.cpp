#include "serve.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <pthread.h>

#include <csignal>
#include <filesystem>

#include "core/device.h"
#include "core/error.h"
#include "load/model_loader.h"
#include "models/quantize.h"
#include "quantize.h"
#include "serve/engine_factory.h"
#include "serve/server.h"

namespace strata {

CLI::App* add_serve_command(CLI::App& app, ServeCommandOptions& o) {
  auto* s = app.add_subcommand("serve", "OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, "
                                        "/health, /metrics (docs/serving.md)");
  s->add_option("--ckpt", o.ckpt, "checkpoint file, a run directory (its newest good checkpoint), or a Hugging Face model directory")
      ->required();
  s->add_option("--port", o.port, "TCP port (0: any free one)")->capture_default_str()->check(CLI::Range(0, 65535));
  s->add_option("--host", o.host, "address to listen on (0.0.0.0: every interface)")->capture_default_str();
  s->add_option("--model-name", o.model_name, "the model's id in /v1/models and requests (default: the checkpoint's file name)");
  std::string kinds;
  for (auto& k : engine_kinds()) kinds += (kinds.empty() ? "" : " | ") + k;
  s->add_option("--engine", o.engine, "scheduler: " + kinds)->capture_default_str();
  s->add_option("--max-queue", o.max_queue, "requests waiting beyond those running; more are answered 429")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  s->add_option("--max-prompt-tokens", o.max_prompt_tokens, "longer prompts are answered 400")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  s->add_option("--max-tokens", o.max_tokens, "the most tokens a request may ask to generate; more: 400")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  s->add_option("--max-context", o.max_context, "prompt + completion tokens of one request (default: the two limits above added)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 25));
  s->add_option("--max-running", o.max_running, "batch engine: sequences decoding at once")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  s->add_option("--max-batch-tokens", o.max_batch_tokens, "batch engine: tokens per model step (decode rows + prefill chunks)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  s->add_option("--cache-mib", o.cache_mib, "batch engine: memory for KV pages and Mamba state slots (MiB)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  s->add_option("--snapshot-slots", o.snapshot_slots,
                "batch engine, Mamba models: state slots for prefix-cache snapshots beyond one per running sequence "
                "(default: a quarter of --max-running)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  s->add_option("--page-size", o.page_size, "batch engine: tokens per KV page")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(4096)));
  s->add_option("--row-tile", o.row_tile,
                "batch engine: > 0 makes a request's tokens independent of the batch (docs/serving.md; on cuda, the "
                "rows per linear-layer product; on the cpu any value > 0 selects the row-invariant kernels), 0 turns "
                "that off")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(4096)));
  s->add_option("--timeout-s", o.timeout_s, "a request still running after this long is ended (408)")
      ->capture_default_str()->check(CLI::Range(0.001, 1e7));
  s->add_option("--threads", o.threads, "compute threads of the engine (OpenMP; 0: its default)")->capture_default_str()->check(CLI::Range(0, 4096));
  s->add_option("--http-threads", o.http_threads, "HTTP worker threads (concurrent connections)")->capture_default_str()->check(CLI::Range(1, 4096));
  s->add_option("--device", o.device, "where the model runs: cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  add_quantize_option(s, o.quant);
  s->add_flag("--quiet", o.quiet, "no line per request");
  return s;
}

int run_serve_command(const ServeCommandOptions& o) {
  const Device dev = o.device == "cuda" ? Device::cuda : Device::cpu;
  require_device(dev, "--device");
  std::string skipped;
  const std::string path = resolve_checkpoint(o.ckpt, &skipped);
  if (!skipped.empty()) fmt::print(stderr, "warning: skipped unusable checkpoints in '{}': {}; using {}\n", o.ckpt, skipped, path);
  LoadedModel lm = load_model(path);
  apply_load_quant(*lm.model, o.quant);
  lm.model->params().to_device(dev);

  EngineSettings es;
  es.max_queue = o.max_queue;
  es.max_context = o.max_context > 0 ? o.max_context : o.max_prompt_tokens + o.max_tokens;
  es.max_running = o.max_running;
  es.max_batch_tokens = o.max_batch_tokens;
  es.cache_mib = o.cache_mib;
  es.page_size = o.page_size;
  es.row_tile = o.row_tile;
  es.snapshot_slots = o.snapshot_slots;
  ServeOptions so;
  so.host = o.host;
  so.port = o.port;
  so.model_name = o.model_name.empty() ? std::filesystem::path(o.ckpt).filename().string() : o.model_name;
  if (so.model_name.empty()) so.model_name = std::filesystem::path(o.ckpt).parent_path().filename().string();  // "dir/"
  so.max_prompt_tokens = o.max_prompt_tokens;
  so.max_tokens = o.max_tokens;
  so.timeout_s = o.timeout_s;
  so.http_threads = o.http_threads;
  so.compute_threads = o.threads;
  so.log_requests = !o.quiet;

  // SIGINT / SIGTERM are taken by this thread (sigwait), never by a server thread: block them
  // before any thread starts, so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Server server(lm, make_engine(o.engine, *lm.model, es), so);
  const int port = server.start();
  const std::string host = o.host == "0.0.0.0" ? "127.0.0.1" : o.host;
  fmt::print(stderr, "strata serve: model '{}' ({}) on http://{}:{} (engine {}, context {} tokens)\n", so.model_name, path, o.host,
             port, o.engine, es.max_context);
  if (!server.chat_unavailable().empty()) fmt::print(stderr, "note: /v1/chat/completions is off: {}\n", server.chat_unavailable());
  fmt::print(stderr,
             "try: curl http://{}:{}/v1/completions -H 'Content-Type: application/json' "
             "-d '{{\"model\": \"{}\", \"prompt\": \"Hello\", \"max_tokens\": 16, \"temperature\": 0}}'\n",
             host, port, so.model_name);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  fmt::print(stderr, "strata serve: {} received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  server.stop();
  return 0;
}

}  // namespace strata
