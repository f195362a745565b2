#include "train/config_load.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <climits>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/error.h"
#include "core/params.h"
#include "layers/block.h"
#include "train/synthetic_task.h"

namespace strata {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema: one row per key. The table is the single source of truth for parsing, to_yaml, help and
// comparison, so a new field in models/config.h needs exactly one new row here.

enum class Kind { Int, Int64, UInt64, Float, Bool, String };

struct Field {
  std::string key;
  Kind kind;
  std::function<void*(Config&)> ref;  // address of the field inside a Config
  std::string help;
  std::vector<std::string> allowed;   // enumeration values (as written in YAML); empty = any
};

template <class T> constexpr Kind kind_of() {
  if constexpr (std::is_same_v<T, int>) return Kind::Int;
  else if constexpr (std::is_same_v<T, int64_t>) return Kind::Int64;
  else if constexpr (std::is_same_v<T, uint64_t>) return Kind::UInt64;
  else if constexpr (std::is_same_v<T, float>) return Kind::Float;
  else if constexpr (std::is_same_v<T, bool>) return Kind::Bool;
  else {
    static_assert(std::is_same_v<T, std::string>, "unsupported config field type");
    return Kind::String;
  }
}

// The member pointers walk from Config to the field: (c .* m1) .* m2 ...
template <class... Ms> Field F(const char* key, const char* help, std::vector<std::string> allowed, Ms... ms) {
  using T = std::remove_cvref_t<decltype((std::declval<Config&>() .* ... .* ms))>;
  return {key, kind_of<T>(), [=](Config& c) -> void* { return &(c .* ... .* ms); }, help, std::move(allowed)};
}

struct Schema {
  std::vector<Field> fields;                                  // in to_yaml order
  std::map<std::string, size_t> leaf;                         // key -> index in fields
  std::set<std::string> sections;                             // "" is the top level
  std::map<std::string, std::vector<std::string>> children;   // section -> child names, sorted
};

std::string parent_of(const std::string& key) {
  size_t p = key.rfind('.');
  return p == std::string::npos ? "" : key.substr(0, p);
}
std::string last_of(const std::string& key) {
  size_t p = key.rfind('.');
  return p == std::string::npos ? key : key.substr(p + 1);
}
std::string join_key(const std::string& prefix, const std::string& name) { return prefix.empty() ? name : prefix + "." + name; }

const Schema& schema() {
  static const Schema s = [] {
    constexpr auto M = &Config::model;
    constexpr auto Tr = &Config::train;
    constexpr auto O = &Config::optim;
    constexpr auto D = &Config::data;
    constexpr auto Mq = &DataConfig::mqar;
    constexpr auto Sc = &DataConfig::selective_copying;
    constexpr auto Ih = &DataConfig::induction_heads;
    constexpr auto At = &ModelConfig::attention;
    constexpr auto Ma = &ModelConfig::mamba;
    constexpr auto Ml = &ModelConfig::mlp;
    constexpr auto Mo = &ModelConfig::moe;
    constexpr auto R = &Config::robot;
    constexpr auto Rp = &RobotConfig::planner;
    constexpr auto Rc = &RobotConfig::controller;
    constexpr auto Rd = &RobotConfig::data;
    Schema sc;
    sc.fields = {
        F("model.vocab", "tokenizer: bytes = byte-level, 256 ids; tokenizer = the tokenizer.json stored in the checkpoint "
          "(models imported from Hugging Face); ids = token ids without a tokenizer (an import that had none)",
          {"bytes", "tokenizer", "ids"}, M, &ModelConfig::vocab),
        F("model.vocab_size", "vocabulary size (vocab: bytes fixes it to 256)", {}, M, &ModelConfig::vocab_size),
        F("model.d_model", "residual stream width", {}, M, &ModelConfig::d_model),
        F("model.pattern", "one character per sublayer: M Mamba, * attention, - MLP, E MoE ('/' reserved for MTP)", {}, M, &ModelConfig::pattern),
        F("model.repeat", "how many times the pattern is stacked", {}, M, &ModelConfig::repeat),
        F("model.tie_embeddings", "output head shares the embedding matrix", {}, M, &ModelConfig::tie_embeddings),
        F("model.norm_eps", "RMSNorm epsilon", {}, M, &ModelConfig::norm_eps),
        F("model.init_std", "std of the normal init of embeddings and projections", {}, M, &ModelConfig::init_std),
        F("model.attention.heads", "query heads", {}, M, At, &AttentionConfig::heads),
        F("model.attention.kv_heads", "key/value heads, dividing heads (0 = heads: MHA; fewer: GQA; 1: MQA)", {}, M, At, &AttentionConfig::kv_heads),
        F("model.attention.head_dim", "width of one head, even for RoPE (0 = d_model / heads)", {}, M, At, &AttentionConfig::head_dim),
        F("model.attention.rope_theta", "RoPE base frequency", {}, M, At, &AttentionConfig::rope_theta),
        F("model.attention.rope", "gqa: rotary position embedding on q and k (false = no positional encoding, as Jamba)", {}, M, At, &AttentionConfig::rope),
        F("model.attention.rope_dims", "gqa: channels per head that RoPE rotates, even; the rest pass through (0 = head_dim)", {}, M, At, &AttentionConfig::rope_dims),
        F("model.attention.rope_type", "RoPE frequencies as transformers' rope_type", {"default", "linear", "llama3"}, M, At, &AttentionConfig::rope_type),
        F("model.attention.rope_factor", "linear, llama3: context extension factor (transformers' factor)", {}, M, At, &AttentionConfig::rope_factor),
        F("model.attention.rope_low_freq_factor", "llama3: low_freq_factor", {}, M, At, &AttentionConfig::rope_low_freq_factor),
        F("model.attention.rope_high_freq_factor", "llama3: high_freq_factor (> low_freq_factor)", {}, M, At, &AttentionConfig::rope_high_freq_factor),
        F("model.attention.rope_original_max_positions", "llama3: original_max_position_embeddings", {}, M, At, &AttentionConfig::rope_original_max_positions),
        F("model.attention.window", "sliding window (gqa, mla), each query attends to the last `window` positions, itself "
          "included (0 = full causal); strata-only, no HF export", {}, M, At, &AttentionConfig::window),
        F("model.attention.kind", "attention variant (gqa covers MHA and MQA; mla: DeepSeek multi-head latent attention)", {"gqa", "mla"}, M, At, &AttentionConfig::kind),
        F("model.attention.q_lora_rank", "mla: rank of the query compression (0 = none: a plain q_proj)", {}, M, At, &AttentionConfig::q_lora_rank),
        F("model.attention.kv_lora_rank", "mla: width of the cached key/value latent (0 = 4 * head_dim)", {}, M, At, &AttentionConfig::kv_lora_rank),
        F("model.attention.qk_nope_head_dim", "mla: query/key channels per head without RoPE (0 = head_dim)", {}, M, At, &AttentionConfig::qk_nope_head_dim),
        F("model.attention.qk_rope_head_dim", "mla: query/key channels per head with RoPE, even (0 = head_dim / 2)", {}, M, At, &AttentionConfig::qk_rope_head_dim),
        F("model.attention.v_head_dim", "mla: value channels per head (0 = head_dim)", {}, M, At, &AttentionConfig::v_head_dim),
        F("model.attention.rope_interleave", "mla: RoPE on interleaved pairs (DeepSeek-V3); false = rotate_half", {}, M, At, &AttentionConfig::rope_interleave),
        F("model.attention.softmax_scale", "mla: score scale (0 = 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim))", {}, M, At, &AttentionConfig::softmax_scale),
        F("model.mamba.version", "1 = Mamba (selective scan), 2 = Mamba-2 (SSD)", {"1", "2"}, M, Ma, &MambaConfig::version),
        F("model.mamba.d_state", "SSM state size per channel (v1) or per head (v2)", {}, M, Ma, &MambaConfig::d_state),
        F("model.mamba.d_conv", "width of the causal depthwise convolution", {}, M, Ma, &MambaConfig::d_conv),
        F("model.mamba.expand", "inner width = expand * d_model", {}, M, Ma, &MambaConfig::expand),
        F("model.mamba.head_dim", "Mamba-2 head width; must divide expand * d_model", {}, M, Ma, &MambaConfig::head_dim),
        F("model.mamba.ngroups", "Mamba-2 groups of B/C; must divide the number of heads", {}, M, Ma, &MambaConfig::ngroups),
        F("model.mamba.chunk", "Mamba-2 SSD chunk length", {}, M, Ma, &MambaConfig::chunk),
        F("model.mamba.dt_rank", "Mamba-1 rank of the dt projection (0 = ceil(d_model / 16))", {}, M, Ma, &MambaConfig::dt_rank),
        F("model.mamba.dt_min", "smallest initial dt (log-uniform init)", {}, M, Ma, &MambaConfig::dt_min),
        F("model.mamba.dt_max", "largest initial dt", {}, M, Ma, &MambaConfig::dt_max),
        F("model.mamba.dt_init_floor", "lower clamp of the initial dt", {}, M, Ma, &MambaConfig::dt_init_floor),
        F("model.mamba.conv_bias", "bias in the causal convolution", {}, M, Ma, &MambaConfig::conv_bias),
        F("model.mamba.bias", "bias in in_proj / out_proj", {}, M, Ma, &MambaConfig::bias),
        F("model.mamba.inner_norms", "Mamba-1: RMSNorm on dt, B and C after x_proj (Jamba)", {}, M, Ma, &MambaConfig::inner_norms),
        F("model.mamba.selective", "Mamba-1: false = non-selective S4D-like baseline (dt, B, C independent of the input; "
          "strata-only, no HF export)", {}, M, Ma, &MambaConfig::selective),
        F("model.mlp.hidden", "SwiGLU hidden width (0 = 8/3 * d_model rounded up to 64)", {}, M, Ml, &MlpConfig::hidden),
        F("model.moe.experts", "routed experts", {}, M, Mo, &MoeConfig::experts),
        F("model.moe.top_k", "experts each token is sent to (1 .. experts)", {}, M, Mo, &MoeConfig::top_k),
        F("model.moe.shared_experts", "experts every token always uses", {}, M, Mo, &MoeConfig::shared_experts),
        F("model.moe.hidden", "hidden width of one expert (0 = mlp.hidden)", {}, M, Mo, &MoeConfig::hidden),
        F("model.moe.aux_loss", "coefficient of the load-balancing loss", {}, M, Mo, &MoeConfig::aux_loss),
        F("model.moe.renorm", "renormalise the top-k gates to sum to 1 (Mixtral)", {}, M, Mo, &MoeConfig::renorm),
        F("train.steps", "optimizer steps", {}, Tr, &TrainConfig::steps),
        F("train.batch", "sequences per micro-batch", {}, Tr, &TrainConfig::batch),
        F("train.seq", "tokens per sequence", {}, Tr, &TrainConfig::seq),
        F("train.grad_accum", "micro-batches per optimizer step", {}, Tr, &TrainConfig::grad_accum),
        F("train.precision", "precision of the linear layers' products (bf16: bf16 operands, fp32 master weights and accumulation)", {"fp32", "bf16"}, Tr, &TrainConfig::precision),
        F("train.seed", "seed of the init and of the data order", {}, Tr, &TrainConfig::seed),
        F("train.eval_every", "steps between validation evals (0 = only at the end)", {}, Tr, &TrainConfig::eval_every),
        F("train.eval_batches", "batches per validation eval", {}, Tr, &TrainConfig::eval_batches),
        F("train.save_every", "steps between checkpoints (0 = only at the end)", {}, Tr, &TrainConfig::save_every),
        F("train.keep_checkpoints", "newest checkpoints kept in the run directory", {}, Tr, &TrainConfig::keep_checkpoints),
        F("train.log_every", "steps between log lines and metrics rows", {}, Tr, &TrainConfig::log_every),
        F("train.device", "where to train", {"cpu", "cuda"}, Tr, &TrainConfig::device),
        F("train.run_dir", "output directory (\"\" = runs/<config file stem>)", {}, Tr, &TrainConfig::run_dir),
        F("train.max_nonfinite_steps", "a step with a non-finite loss or gradient norm is skipped (no update); this many "
          "in a row stop the run (exit 1), keeping the last good checkpoint", {}, Tr, &TrainConfig::max_nonfinite_steps),
        F("train.dist_bucket_mb", "data parallel (mpirun/srun): MiB of gradients per all-reduce bucket", {}, Tr, &TrainConfig::dist_bucket_mb),
        F("train.dist_overlap", "data parallel: all-reduce each bucket during backward, as soon as its gradients are final", {}, Tr, &TrainConfig::dist_overlap),
        F("train.dist_timeout_s", "data parallel: seconds a collective may wait (for a dead or hung rank) before the job is aborted", {}, Tr, &TrainConfig::dist_timeout_s),
        F("train.dist_zero1", "data parallel: ZeRO-1, each rank keeps the AdamW moments of its 1/N of the parameters only "
          "(optimizer memory / N) and updates that shard, then an all-gather brings every rank the new parameters", {}, Tr, &TrainConfig::dist_zero1),
        F("optim.lr", "peak learning rate", {}, O, &OptimConfig::lr),
        F("optim.min_lr_ratio", "final / peak learning rate of the cosine schedule", {}, O, &OptimConfig::min_lr_ratio),
        F("optim.warmup", "linear warmup steps", {}, O, &OptimConfig::warmup),
        F("optim.schedule", "learning-rate schedule after warmup", {"cosine", "constant"}, O, &OptimConfig::schedule),
        F("optim.weight_decay", "AdamW decoupled weight decay (not applied to norms)", {}, O, &OptimConfig::weight_decay),
        F("optim.beta1", "AdamW first-moment decay", {}, O, &OptimConfig::beta1),
        F("optim.beta2", "AdamW second-moment decay", {}, O, &OptimConfig::beta2),
        F("optim.eps", "AdamW epsilon", {}, O, &OptimConfig::eps),
        F("optim.clip", "max global gradient norm (0 = no clipping)", {}, O, &OptimConfig::clip),
        F("data.kind", "dataset: text = byte-level text file; the synthetic tasks (docs/research.md) are generated from train.seed",
          {"text", "mqar", "selective_copying", "induction_heads"}, D, &DataConfig::kind),
        F("data.path", "training text file, relative to the working directory", {}, D, &DataConfig::path),
        F("data.val_fraction", "fraction at the end of the file held out for validation", {}, D, &DataConfig::val_fraction),
        // The synthetic kinds; to_yaml writes only the section of the kind in use.
        F("data.eval_seqs", "synthetic kinds: space-separated further sequence lengths the accuracy is measured at (val_acc@L)", {}, D, &DataConfig::eval_seqs),
        F("data.mqar.vocab", "mqar: token ids; keys from [1, vocab/2), values from [vocab/2, vocab)", {}, D, Mq, &MqarConfig::vocab),
        F("data.mqar.pairs", "mqar: key-value pairs at the start of each sequence", {}, D, Mq, &MqarConfig::pairs),
        F("data.mqar.queries", "mqar: keys queried again, one tested position each (0 = pairs)", {}, D, Mq, &MqarConfig::queries),
        F("data.mqar.power_a", "mqar: query gaps drawn with probability ~ gap^(power_a - 1), as Zoology (1 = uniform)", {}, D, Mq, &MqarConfig::power_a),
        F("data.selective_copying.vocab", "selective_copying: token ids: the noise token, the copy marker (vocab - 1) and vocab - 2 data symbols", {}, D, Sc, &SelectiveCopyingConfig::vocab),
        F("data.selective_copying.tokens", "selective_copying: data tokens scattered in the noise and copied in order at the end", {}, D, Sc, &SelectiveCopyingConfig::tokens),
        F("data.selective_copying.noise_token", "selective_copying: the filler token id", {}, D, Sc, &SelectiveCopyingConfig::noise_token),
        F("data.induction_heads.vocab", "induction_heads: token ids", {}, D, Ih, &InductionHeadsConfig::vocab),
        F("data.induction_heads.trigger", "induction_heads: the special token whose successor is recalled at the end (-1 = vocab - 1)", {}, D, Ih, &InductionHeadsConfig::trigger),
        // The robot policy (models/multirate.h, docs/robotics.md); its blocks take their settings from model.*.
        F("robot.planner.pattern", "planner layers, one character per sublayer as model.pattern (\"\" = no robot policy: a language model)", {}, R, Rp, &RobotNetConfig::pattern),
        F("robot.planner.d_model", "planner width", {}, R, Rp, &RobotNetConfig::d_model),
        F("robot.planner.repeat", "how many times the planner pattern is stacked", {}, R, Rp, &RobotNetConfig::repeat),
        F("robot.controller.pattern", "controller layers (small: M or -)", {}, R, Rc, &RobotNetConfig::pattern),
        F("robot.controller.d_model", "controller width", {}, R, Rc, &RobotNetConfig::d_model),
        F("robot.controller.repeat", "how many times the controller pattern is stacked", {}, R, Rc, &RobotNetConfig::repeat),
        F("robot.planner_hz", "planner ticks per second", {}, R, &RobotConfig::planner_hz),
        F("robot.control_hz", "controller ticks per second (a multiple of planner_hz; one episode step per control tick)", {}, R, &RobotConfig::control_hz),
        F("robot.handoff", "how the controller's executor uses a plan's chunk: newest plan, ACT temporal ensembling, real-time chunking", {"hold", "ensemble", "rtc"}, R, &RobotConfig::handoff),
        F("robot.chunk", "K: actions per planner chunk (0 = latent only)", {}, R, &RobotConfig::chunk),
        F("robot.latent", "P: plan latent width (0 = chunk only)", {}, R, &RobotConfig::latent),
        F("robot.planner_delay_ticks", "simulated planner latency in training, in control ticks", {}, R, &RobotConfig::planner_delay_ticks),
        F("robot.loss", "action loss over the masked actions", {"l1", "mse"}, R, &RobotConfig::loss),
        F("robot.window", "control ticks per training segment", {}, R, &RobotConfig::window),
        F("robot.data.path", "robomimic HDF5 episodes file", {}, R, Rd, &RobotDataConfig::path),
        F("robot.data.obs_keys", "space-separated observation keys (\"\" = every key of the file)", {}, R, Rd, &RobotDataConfig::obs_keys),
        F("robot.data.val_fraction", "fraction of the episodes held out for validation", {}, R, Rd, &RobotDataConfig::val_fraction),
    };
    sc.sections.insert("");
    for (size_t i = 0; i < sc.fields.size(); ++i) {
      const std::string& k = sc.fields[i].key;
      sc.leaf[k] = i;
      for (std::string child = k, sec = parent_of(k);; child = sec, sec = parent_of(sec)) {
        auto& names = sc.children[sec];
        if (std::find(names.begin(), names.end(), last_of(child)) == names.end()) names.push_back(last_of(child));
        if (sec.empty()) break;
        sc.sections.insert(sec);
      }
    }
    for (auto& [sec, names] : sc.children) std::sort(names.begin(), names.end());
    return sc;
  }();
  return s;
}

const Field& field_of(const std::string& key) { return schema().fields[schema().leaf.at(key)]; }

// ---------------------------------------------------------------------------------------------
// Values <-> text

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Int:
    case Kind::Int64: return "an integer";
    case Kind::UInt64: return "a non-negative integer";
    case Kind::Float: return "a number";
    case Kind::Bool: return "a boolean (true or false)";
    case Kind::String: return "a string";
  }
  return "?";
}
const char* type_word(Kind k) {
  switch (k) {
    case Kind::Int:
    case Kind::Int64:
    case Kind::UInt64: return "integer";
    case Kind::Float: return "number";
    case Kind::Bool: return "boolean";
    case Kind::String: return "string";
  }
  return "?";
}

// The value as it reads in a message or in YAML (strings unquoted).
std::string format_value(const Field& f, const Config& c) {
  void* p = f.ref(const_cast<Config&>(c));
  switch (f.kind) {
    case Kind::Int: return fmt::format("{}", *static_cast<int*>(p));
    case Kind::Int64: return fmt::format("{}", *static_cast<int64_t*>(p));
    case Kind::UInt64: return fmt::format("{}", *static_cast<uint64_t*>(p));
    // fmt writes the shortest text that reads back as the same float, which makes to_yaml exact.
    case Kind::Float: return fmt::format("{}", *static_cast<float*>(p));
    case Kind::Bool: return *static_cast<bool*>(p) ? "true" : "false";
    case Kind::String: return *static_cast<std::string*>(p);
  }
  return "";
}

std::string yaml_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += char(ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      out += fmt::format("\\x{:02x}", unsigned(ch));
    } else {
      out += char(ch);
    }
  }
  return out + "\"";
}

enum class Parse { Ok, Bad, Range };

template <class I> Parse parse_integer(std::string s, I& out) {
  if (!s.empty() && s[0] == '+') s.erase(0, 1);  // from_chars takes '-' but not '+'
  if (s.empty()) return Parse::Bad;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc::result_out_of_range) return Parse::Range;
  return (ec == std::errc() && end == s.data() + s.size()) ? Parse::Ok : Parse::Bad;
}

Parse parse_float(std::string s, float& out) {
  if (!s.empty() && s[0] == '+') s.erase(0, 1);
  if (s.empty()) return Parse::Bad;
  // Parsed straight to float (not via double) so that the shortest text fmt writes reads back exactly.
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, std::chars_format::general);
  if (ec == std::errc::result_out_of_range) return Parse::Range;
  if (ec != std::errc() || end != s.data() + s.size()) return Parse::Bad;
  return std::isfinite(out) ? Parse::Ok : Parse::Bad;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      bool same = std::tolower((unsigned char)a[i - 1]) == std::tolower((unsigned char)b[j - 1]);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Typos are short edits; a looser bound suggests unrelated keys.
bool close_enough(const std::string& typo, const std::string& cand) {
  return edit_distance(typo, cand) <= (typo.size() <= 4 ? 1u : 2u);
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string did_you_mean(const std::vector<std::string>& cands) {
  if (cands.empty()) return "";
  std::vector<std::string> q;
  for (auto& c : cands) q.push_back("'" + c + "'");
  return " (did you mean " + join(q, " or ") + "?)";
}

// ---------------------------------------------------------------------------------------------
// Loader: the file and the overrides become a flat map key -> (value text, where it came from);
// only then are values converted and checked, so every message can name its source.

struct Entry {
  YAML::NodeType::value type = YAML::NodeType::Scalar;
  std::string text;   // the scalar, unquoted
  std::string where;  // "a.yaml:12" or "command-line override 'k=v'"
  bool from_file = false;
};

std::string describe(const Entry& e) {
  switch (e.type) {
    case YAML::NodeType::Scalar: return "'" + e.text + "'";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    default: return "nothing";
  }
}

class Loader {
 public:
  explicit Loader(std::string source) : src_(std::move(source)) {}

  void read_yaml(const std::string& text) {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(text);
    } catch (const YAML::Exception& e) {
      std::string hint;
      // A plain value starting with '*' is a YAML alias: the usual trap with patterns like *-.
      if (e.msg.find("anchor") != std::string::npos)
        hint = " (a value starting with '*' is read as a YAML alias: quote it, e.g. pattern: \"*-\")";
      std::string at = e.mark.is_null() ? src_ : fmt::format("{}:{}:{}", src_, e.mark.line + 1, e.mark.column + 1);
      throw InputError(fmt::format("{}: YAML syntax error: {}{}", at, e.msg, hint));
    }
    if (docs.size() > 1)
      throw InputError(fmt::format("{}: holds {} YAML documents (separated by '---'); a config is one document", src_, docs.size()));
    if (docs.empty() || docs[0].IsNull()) return;  // an empty file: every key at its default
    if (!docs[0].IsMap())
      throw InputError(fmt::format("{}: a config is a mapping of the sections {}, got {}", at(docs[0]),
                                   join(schema().children.at(""), ", "), describe(entry(docs[0], ""))));
    walk(docs[0], "");
  }

  void apply_override(const std::string& raw) {
    const std::string where = fmt::format("command-line override '{}'", raw);
    enum { Set, Add, Force, Del } op = Set;
    std::string body = raw;
    if (body.rfind("~", 0) == 0) op = Del, body.erase(0, 1);
    else if (body.rfind("++", 0) == 0) op = Force, body.erase(0, 2);
    else if (body.rfind("+", 0) == 0) op = Add, body.erase(0, 1);
    size_t eq = body.find('=');
    bool has_value = eq != std::string::npos;
    std::string key = body.substr(0, eq), value = has_value ? body.substr(eq + 1) : "";
    auto syntax = [&](const std::string& why) {
      throw InputError(fmt::format("{}: bad override syntax: {}; expected key=value, +key=value, ++key=value, ~key or "
                                   "~key=value (e.g. model.d_model=256)",
                                   where, why));
    };
    if (raw.empty()) syntax("it is empty");
    if (op != Del && !has_value) syntax("no '=value'");
    if (key.empty()) syntax("no key");
    for (char ch : key)
      if (!(std::isalnum((unsigned char)ch) || ch == '_' || ch == '.'))
        syntax(fmt::format("'{}' is not allowed in a key (keys are dotted names like optim.lr)", ch));
    if (key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos) syntax("empty name between dots");

    const bool is_section = lookup(key, where);
    if (op == Del) {
      remove(key, is_section, has_value ? std::optional<std::string>(value) : std::nullopt, where);
      return;
    }
    if (is_section) {
      auto first = std::find_if(schema().fields.begin(), schema().fields.end(),
                                [&](const Field& f) { return f.key.rfind(key + ".", 0) == 0; });
      throw InputError(fmt::format("{}: '{}' is a section, not a key; override its keys one by one, e.g. {}=...", where, key,
                                   first->key));
    }
    if (op == Add) {
      if (auto it = entries_.find(key); it != entries_.end())
        throw InputError(fmt::format("{}: '{}' is already set ({}); '+' only adds a key the config does not have "
                                     "(Hydra's rule): use '{}={}' to change it, or '++{}={}' to set or add",
                                     where, key, it->second.where, key, value, key, value));
    }
    entries_[key] = override_value(field_of(key), value, where);
  }

  Config build() {
    Config c;
    for (const Field& f : schema().fields)
      if (auto it = entries_.find(f.key); it != entries_.end()) assign(f, it->second, c);
    check_values(c);
    check_data_values(c);
    derive_task_vocab(c);
    // resolve() fills head_dim from d_model / heads; the divisibility check only applies then.
    const bool head_dim_derived = c.model.attention.head_dim == 0;
    const AttentionConfig written = c.model.attention;
    resolve(c.model);
    check_shapes(c, head_dim_derived);
    check_mla(c, written);
    check_sizes(c);
    check_robot(c);
    check_task(c);
    c.source_path = src_;
    return c;
  }

 private:
  std::string at(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    return m.is_null() ? src_ : fmt::format("{}:{}", src_, m.line + 1);
  }

  static Entry entry(const YAML::Node& v, std::string where) {
    Entry e;
    e.type = v.Type() == YAML::NodeType::Undefined ? YAML::NodeType::Null : v.Type();
    if (v.IsScalar()) e.text = v.Scalar();
    e.where = std::move(where);
    return e;
  }

  [[noreturn]] void unknown_key(const std::string& where, const std::string& full, const std::string& parent,
                                const std::string& name) const {
    const Schema& s = schema();
    const auto& siblings = s.children.at(parent);
    // Misplaced (the exact name in another section) comes first, then misspelt siblings, and only
    // when neither fits, close names elsewhere.
    std::vector<std::string> sugg;
    for (auto& [sec, names] : s.children)
      if (sec != parent && std::find(names.begin(), names.end(), name) != names.end()) sugg.push_back(join_key(sec, name));
    for (auto& c : siblings)
      if (close_enough(name, c)) sugg.push_back(c);
    if (sugg.empty()) {
      for (auto& [sec, names] : s.children)
        if (sec != parent)
          for (auto& c : names)
            if (close_enough(name, c)) sugg.push_back(join_key(sec, c));
    }
    if (sugg.size() > 3) sugg.resize(3);
    std::string nest;
    if (name.find('.') != std::string::npos)
      nest = " (a YAML key is one name: nest sections, e.g. 'model: {d_model: 256}', rather than writing 'model.d_model: 256')";
    std::string valid = parent.empty() ? "valid top-level keys: " : fmt::format("valid keys in '{}': ", parent);
    throw InputError(fmt::format("{}: unknown key '{}'; {}{}{}{}", where, full, valid, join(siblings, ", "), did_you_mean(sugg), nest));
  }

  void walk(const YAML::Node& map, const std::string& prefix) {
    const Schema& s = schema();
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node k = it->first;  // copies: the iterator hands out a temporary pair
      const YAML::Node v = it->second;
      const std::string where = at(k);
      if (!k.IsScalar()) throw InputError(fmt::format("{}: keys must be plain names, got {}", where, describe(entry(k, where))));
      const std::string name = k.Scalar(), full = join_key(prefix, name);
      if (name.find('.') != std::string::npos || name.empty()) unknown_key(where, full, prefix, name);
      if (s.sections.count(full)) {
        if (auto d = section_where_.find(full); d != section_where_.end())
          throw InputError(fmt::format("{}: duplicate section '{}' (first at {})", where, full, d->second));
        section_where_[full] = where;
        if (v.IsMap()) walk(v, full);
        else if (!v.IsNull())
          throw InputError(fmt::format("{}: '{}' is a section; expected a mapping of its keys ({}), got {}", where, full,
                                       join(s.children.at(full), ", "), describe(entry(v, where))));
      } else if (s.leaf.count(full)) {
        if (auto d = entries_.find(full); d != entries_.end())
          throw InputError(fmt::format("{}: duplicate key '{}' (first at {})", where, full, d->second.where));
        Entry e = entry(v, where);
        e.from_file = true;
        entries_[full] = std::move(e);
      } else {
        unknown_key(where, full, prefix, name);
      }
    }
  }

  // Checks a dotted override key against the schema; true when it names a section.
  bool lookup(const std::string& key, const std::string& where) const {
    const Schema& s = schema();
    std::string prefix;
    size_t start = 0;
    while (true) {
      size_t dot = key.find('.', start);
      std::string name = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      std::string full = join_key(prefix, name);
      if (s.leaf.count(full)) {
        if (dot != std::string::npos)
          throw InputError(fmt::format("{}: unknown key '{}': '{}' holds {}, it is not a section", where, key, full,
                                       kind_name(field_of(full).kind)));
        return false;
      }
      if (!s.sections.count(full)) unknown_key(where, key, prefix, name);
      if (dot == std::string::npos) return true;
      prefix = full;
      start = dot + 1;
    }
  }

  static Entry override_value(const Field& f, const std::string& value, const std::string& where) {
    Entry e;
    e.where = where;
    e.type = YAML::NodeType::Scalar;
    e.text = value;
    // A string key takes the text as written unless it is quoted: YAML would read '-' as a list,
    // '*-' as an alias and ' #1' as a comment, none of which a path or pattern means.
    const bool quoted = !value.empty() && (value[0] == '\'' || value[0] == '"');
    if (f.kind == Kind::String && !quoted) return e;
    try {
      e = entry(YAML::Load(value), where);
    } catch (const YAML::Exception& ex) {
      throw InputError(fmt::format("{}: the value of '{}' is not valid YAML: {}", where, f.key, ex.msg));
    }
    return e;
  }

  void remove(const std::string& key, bool is_section, const std::optional<std::string>& value, const std::string& where) {
    if (is_section) {
      if (value) throw InputError(fmt::format("{}: '~{}=...' compares a value, but '{}' is a section", where, key, key));
      bool found = section_where_.erase(key) > 0;
      for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->first.rfind(key + ".", 0) == 0) {
          it = entries_.erase(it);
          found = true;
        } else {
          ++it;
        }
      }
      for (auto it = section_where_.begin(); it != section_where_.end();)
        it = it->first.rfind(key + ".", 0) == 0 ? section_where_.erase(it) : std::next(it);
      if (!found) throw InputError(fmt::format("{}: cannot delete '{}': the config does not set it", where, key));
      return;
    }
    auto it = entries_.find(key);
    if (it == entries_.end())
      throw InputError(fmt::format("{}: cannot delete '{}': the config does not set it (it is at its default)", where, key));
    if (value) {
      Entry want = override_value(field_of(key), *value, where);
      if (want.type != it->second.type || want.text != it->second.text)
        throw InputError(fmt::format("{}: cannot delete '{}': it is {} ({}), not {}", where, key, describe(it->second),
                                     it->second.where, describe(want)));
    }
    entries_.erase(it);
  }

  static void assign(const Field& f, const Entry& e, Config& c) {
    void* p = f.ref(c);
    auto fail = [&](const char* problem) {
      std::string hint;
      if (e.text.find(',') != std::string::npos)
        hint = " (a comma-separated list is a sweep; train takes one value)";
      throw InputError(fmt::format("{}: '{}' {}, got {}{}", e.where, f.key, problem, describe(e), hint));
    };
    const std::string must = fmt::format("must be {}", kind_name(f.kind));
    if (f.kind == Kind::String && e.type == YAML::NodeType::Null) {
      *static_cast<std::string*>(p) = "";  // `path:` with nothing after it
    } else if (e.type != YAML::NodeType::Scalar) {
      fail(must.c_str());
    } else {
      Parse r = Parse::Ok;
      switch (f.kind) {
        case Kind::Int: {
          int64_t v = 0;
          r = parse_integer(e.text, v);
          if (r == Parse::Ok && (v < INT32_MIN || v > INT32_MAX)) r = Parse::Range;
          if (r == Parse::Ok) *static_cast<int*>(p) = int(v);
          break;
        }
        case Kind::Int64: r = parse_integer(e.text, *static_cast<int64_t*>(p)); break;
        case Kind::UInt64: r = parse_integer(e.text, *static_cast<uint64_t*>(p)); break;
        case Kind::Float: r = parse_float(e.text, *static_cast<float*>(p)); break;
        case Kind::Bool: {
          const std::string& t = e.text;
          if (t == "true" || t == "True" || t == "TRUE") *static_cast<bool*>(p) = true;
          else if (t == "false" || t == "False" || t == "FALSE") *static_cast<bool*>(p) = false;
          else r = Parse::Bad;
          break;
        }
        case Kind::String: *static_cast<std::string*>(p) = e.text; break;
      }
      if (r == Parse::Bad) fail(must.c_str());
      if (r == Parse::Range) {
        const char* lim = f.kind == Kind::Int     ? "-2147483648 .. 2147483647"
                          : f.kind == Kind::Float ? "float32: magnitude 1.2e-38 .. 3.4e38, or 0"
                                                  : "64 bits";
        fail(fmt::format("{} within range ({})", must, lim).c_str());
      }
    }
    if (!f.allowed.empty()) {
      const std::string v = format_value(f, c);
      if (std::find(f.allowed.begin(), f.allowed.end(), v) == f.allowed.end()) {
        std::vector<std::string> sugg;
        for (auto& a : f.allowed)
          if (f.kind == Kind::String && close_enough(v, a)) sugg.push_back(a);
        std::string extra = f.key == "model.vocab" ? " (tokenizer and ids come with models imported by 'strata import hf')" : "";
        if (f.key == "model.attention.rope_type" && (v == "dynamic" || v == "yarn" || v == "longrope"))
          extra = fmt::format(" ('{}' is a transformers RoPE type that strata does not implement)", v);
        throw InputError(fmt::format("{}: '{}' must be one of: {}; got '{}'{}{}", e.where, f.key, join(f.allowed, ", "), v,
                                     did_you_mean(sugg), extra));
      }
    }
  }

  // --- validation -------------------------------------------------------------------------------

  const Entry* find(const std::string& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
  }

  // Fails naming the location of the key the user most likely just changed (an override if one of
  // the keys came from the command line, else the first one set in the file), plus where each of
  // the other keys came from, so a clash between the file and the command line is visible.
  [[noreturn]] void fail(const std::vector<std::string>& keys, const std::string& msg) const {
    const Entry* primary = nullptr;
    for (auto& k : keys)
      if (const Entry* e = find(k); e && !e->from_file) {
        primary = e;
        break;
      }
    for (auto& k : keys)
      if (const Entry* e = find(k); !primary && e) primary = e;
    std::vector<std::string> notes;
    for (auto& k : keys) {
      const Entry* e = find(k);
      if (e != primary || !e) notes.push_back(fmt::format("{}: {}", k, e ? e->where : "default"));
    }
    std::string head = primary ? primary->where : src_;
    throw InputError(fmt::format("{}: {}{}", head, msg, notes.empty() ? "" : " [" + join(notes, "; ") + "]"));
  }

  static std::string kv(const Config& c, const std::string& key) {
    const Field& f = field_of(key);
    std::string v = format_value(f, c);
    return f.kind == Kind::String ? fmt::format("{}='{}'", key, v) : fmt::format("{}={}", key, v);
  }

  static double num(const Config& c, const std::string& key) {
    const Field& f = field_of(key);
    void* p = f.ref(const_cast<Config&>(c));
    switch (f.kind) {
      case Kind::Int: return *static_cast<int*>(p);
      case Kind::Int64: return double(*static_cast<int64_t*>(p));
      case Kind::UInt64: return double(*static_cast<uint64_t*>(p));
      case Kind::Float: return *static_cast<float*>(p);
      default: return 0;
    }
  }

  // lo <= v (or lo < v when !lo_incl), and v <= hi (or v < hi when !hi_incl).
  void range(const Config& c, const std::string& key, double lo, bool lo_incl, double hi = INFINITY, bool hi_incl = true,
             const char* note = "") const {
    double v = num(c, key);
    if ((lo_incl ? v >= lo : v > lo) && (hi_incl ? v <= hi : v < hi)) return;
    std::string want;
    if (std::isinf(hi)) want = fmt::format("{} {}", lo_incl ? ">=" : ">", lo);
    else want = fmt::format("in {}{}, {}{}", lo_incl ? "[" : "(", lo, hi, hi_incl ? "]" : ")");
    fail({key}, fmt::format("'{}' must be {}{}, got {}", key, want, note, format_value(field_of(key), c)));
  }

  // Checks of one value at a time, on the values as written (0 still means "derive it").
  void check_values(const Config& c) const {
    const ModelConfig& m = c.model;
    range(c, "model.vocab_size", 1, true);
    if (m.vocab == "bytes" && m.vocab_size != 256)
      fail({"model.vocab_size", "model.vocab"},
           fmt::format("{} conflicts with model.vocab='bytes', which has 256 ids; leave vocab_size out or set it to 256",
                       kv(c, "model.vocab_size")));
    // The bound keeps the derived sizes (8/3 * d_model, expand * d_model) far from int overflow.
    range(c, "model.d_model", 1, true, 1 << 20);
    range(c, "model.repeat", 1, true);
    range(c, "model.norm_eps", 0, false);
    range(c, "model.init_std", 0, false);
    if (m.pattern.empty())
      fail({"model.pattern"}, "'model.pattern' is empty; give one character per sublayer: M (Mamba), * (attention), - (MLP), E (MoE)");
    for (size_t i = 0; i < m.pattern.size(); ++i) {
      char ch = m.pattern[i];
      if (ch == 'M' || ch == '*' || ch == '-' || ch == 'E') continue;
      std::string why = ch == '/' ? ": '/' is reserved for multi-token-prediction depths, which are not supported yet" : "";
      fail({"model.pattern"}, fmt::format("{} has '{}' at position {}{}; allowed characters: M (Mamba), * (attention), "
                                          "- (MLP), E (MoE)",
                                          kv(c, "model.pattern"), ch, i + 1, why));
    }
    range(c, "model.attention.heads", 1, true);
    range(c, "model.attention.kv_heads", 0, true, INFINITY, true, " (0 = heads)");
    range(c, "model.attention.head_dim", 0, true, INFINITY, true, " (0 = d_model / heads)");
    range(c, "model.attention.rope_theta", 0, false);
    range(c, "model.attention.rope_dims", 0, true, INFINITY, true, " (0 = head_dim)");
    range(c, "model.attention.rope_factor", 0, false);
    range(c, "model.attention.rope_low_freq_factor", 0, false);
    range(c, "model.attention.rope_high_freq_factor", 0, false);
    range(c, "model.attention.rope_original_max_positions", 1, true);
    if (m.attention.rope_type == "llama3" && !(m.attention.rope_high_freq_factor > m.attention.rope_low_freq_factor))
      fail({"model.attention.rope_high_freq_factor", "model.attention.rope_low_freq_factor"},
           fmt::format("{} must exceed {} (llama3 blends the wavelengths between the two)",
                       kv(c, "model.attention.rope_high_freq_factor"), kv(c, "model.attention.rope_low_freq_factor")));
    range(c, "model.attention.q_lora_rank", 0, true, INFINITY, true, " (0 = no query compression)");
    range(c, "model.attention.kv_lora_rank", 0, true, INFINITY, true, " (0 = 4 * head_dim)");
    range(c, "model.attention.qk_nope_head_dim", 0, true, INFINITY, true, " (0 = head_dim)");
    range(c, "model.attention.qk_rope_head_dim", 0, true, INFINITY, true, " (0 = head_dim / 2)");
    range(c, "model.attention.v_head_dim", 0, true, INFINITY, true, " (0 = head_dim)");
    range(c, "model.attention.softmax_scale", 0, true, INFINITY, false, " (0 = 1 / sqrt(qk head dim))");
    range(c, "model.attention.window", 0, true, INFINITY, true, " (0 = full causal)");
    range(c, "model.mamba.d_state", 1, true);
    range(c, "model.mamba.d_conv", 1, true);
    range(c, "model.mamba.expand", 1, true, 64);
    range(c, "model.mamba.head_dim", 1, true);
    range(c, "model.mamba.ngroups", 1, true);
    range(c, "model.mamba.chunk", 1, true);
    range(c, "model.mamba.dt_rank", 0, true, INFINITY, true, " (0 = ceil(d_model / 16))");
    range(c, "model.mamba.dt_min", 0, false);
    range(c, "model.mamba.dt_max", 0, false);
    range(c, "model.mamba.dt_init_floor", 0, false);
    if (!m.mamba.selective && m.pattern.find('M') != std::string::npos) {
      if (m.mamba.version != 1)
        fail({"model.mamba.selective", "model.mamba.version"},
             fmt::format("{} (the non-selective baseline) is implemented for Mamba-1 only; set model.mamba.version: 1",
                         kv(c, "model.mamba.selective")));
      if (m.mamba.inner_norms)
        fail({"model.mamba.selective", "model.mamba.inner_norms"},
             fmt::format("{} has no x_proj outputs for model.mamba.inner_norms to normalise", kv(c, "model.mamba.selective")));
    }
    if (m.mamba.dt_max < m.mamba.dt_min)
      fail({"model.mamba.dt_max", "model.mamba.dt_min"},
           fmt::format("{} is below {}", kv(c, "model.mamba.dt_max"), kv(c, "model.mamba.dt_min")));
    range(c, "model.mlp.hidden", 0, true, INFINITY, true, " (0 = 8/3 * d_model rounded up to 64)");
    range(c, "model.moe.experts", 1, true);
    range(c, "model.moe.top_k", 1, true);
    if (m.moe.top_k > m.moe.experts)
      fail({"model.moe.top_k", "model.moe.experts"},
           fmt::format("{} exceeds {}: each token goes to top_k distinct experts", kv(c, "model.moe.top_k"), kv(c, "model.moe.experts")));
    range(c, "model.moe.shared_experts", 0, true);
    range(c, "model.moe.hidden", 0, true, INFINITY, true, " (0 = mlp.hidden)");
    range(c, "model.moe.aux_loss", 0, true);

    range(c, "train.steps", 1, true);
    range(c, "train.batch", 1, true);
    range(c, "train.seq", 1, true);
    range(c, "train.grad_accum", 1, true);
    range(c, "train.eval_every", 0, true, INFINITY, true, " (0 = only at the end)");
    range(c, "train.eval_batches", 1, true);
    range(c, "train.save_every", 0, true, INFINITY, true, " (0 = only at the end)");
    range(c, "train.keep_checkpoints", 1, true);
    range(c, "train.log_every", 1, true);
    range(c, "train.max_nonfinite_steps", 1, true);
    range(c, "train.dist_bucket_mb", 0, false);
    range(c, "train.dist_timeout_s", 0, false);

    range(c, "optim.lr", 0, false);
    range(c, "optim.min_lr_ratio", 0, true, 1, true);
    range(c, "optim.warmup", 0, true);
    range(c, "optim.weight_decay", 0, true);
    range(c, "optim.beta1", 0, true, 1, false);
    range(c, "optim.beta2", 0, true, 1, false);
    range(c, "optim.eps", 0, false);
    range(c, "optim.clip", 0, true, INFINITY, true, " (0 = no clipping)");

    range(c, "data.val_fraction", 0, false, 1, false);
  }

  // data.eval_seqs and the keys of the synthetic kind in use (a text run leaves their defaults alone).
  void check_data_values(const Config& c) const {
    const std::string& kind = c.data.kind;
    if (kind == "text") {
      if (!c.data.eval_seqs.empty())
        fail({"data.eval_seqs", "data.kind"}, fmt::format("{} measures the synthetic tasks' accuracy at other lengths; data.kind "
                                                          "is 'text' (remove data.eval_seqs, or use one of: {})",
                                                          kv(c, "data.eval_seqs"), synthetic_kinds()));
      return;
    }
    try {
      parse_eval_seqs(c.data.eval_seqs);
    } catch (const InputError& e) {
      fail({"data.eval_seqs"}, e.what());
    }
    if (kind == "mqar") {
      const MqarConfig& q = c.data.mqar;
      range(c, "data.mqar.pairs", 1, true);
      range(c, "data.mqar.queries", 0, true, q.pairs, true, " (0 = pairs; at most data.mqar.pairs)");
      range(c, "data.mqar.power_a", 0, false);
      range(c, "data.mqar.vocab", 4, true);
      if (q.vocab / 2 - 1 < q.pairs)
        fail({"data.mqar.vocab", "data.mqar.pairs"},
             fmt::format("{} has {} key ids ([1, vocab/2)), fewer than {} distinct keys; raise the vocab to at least {}",
                         kv(c, "data.mqar.vocab"), q.vocab / 2 - 1, kv(c, "data.mqar.pairs"), 2 * q.pairs + 2));
    } else if (kind == "selective_copying") {
      range(c, "data.selective_copying.vocab", 3, true, INFINITY, true, " (the noise token, the copy marker and data symbols)");
      range(c, "data.selective_copying.tokens", 1, true);
      range(c, "data.selective_copying.noise_token", 0, true, c.data.selective_copying.vocab - 2, true,
            " (vocab - 1 is the copy marker)");
    } else if (kind == "induction_heads") {
      range(c, "data.induction_heads.vocab", 2, true);
      range(c, "data.induction_heads.trigger", -1, true, c.data.induction_heads.vocab - 1, true, " (-1 = vocab - 1)");
    }
  }

  // A synthetic task's model vocabulary, unless the config writes one: ids, as many as the task's.
  void derive_task_vocab(Config& c) const {
    if (!is_synthetic_kind(c.data.kind) || find("model.vocab") || find("model.vocab_size")) return;
    c.model.vocab = "ids";
    c.model.vocab_size = int(synthetic_task(c.data).vocab);
  }

  // On resolved values: the model's vocabulary covers the task's ids, and train.seq and every
  // data.eval_seqs length hold the task's sequences.
  void check_task(const Config& c) const {
    if (!is_synthetic_kind(c.data.kind)) return;
    const SyntheticTask t = synthetic_task(c.data);
    if (c.model.vocab_size < t.vocab)
      fail({"model.vocab_size", "model.vocab", t.vocab_key},
           fmt::format("the model's vocabulary (model.vocab_size={}{}) does not cover the task's ids: {}; set "
                       "model.vocab: ids and model.vocab_size: {}, or leave both out to take them from the task",
                       c.model.vocab_size, c.model.vocab == "bytes" ? ", from model.vocab='bytes'" : "", kv(c, t.vocab_key), t.vocab));
    if (c.train.seq < t.min_seq)
      fail({"train.seq", "data.kind"}, fmt::format("{} is shorter than data.kind={} needs: at least {}", kv(c, "train.seq"),
                                                   c.data.kind, t.min_seq_rule));
    for (int64_t L : parse_eval_seqs(c.data.eval_seqs))
      if (L < t.min_seq)
        fail({"data.eval_seqs", "data.kind"}, fmt::format("{} has {}, shorter than data.kind={} needs: at least {}",
                                                          kv(c, "data.eval_seqs"), L, c.data.kind, t.min_seq_rule));
  }

  // The robot section, when the planner has a pattern (else it is unused and left alone).
  void check_robot(const Config& c) const {
    const RobotConfig& r = c.robot;
    if (!r.enabled()) return;
    for (const char* half : {"planner", "controller"}) {
      const RobotNetConfig& n = std::string(half) == "planner" ? r.planner : r.controller;
      const std::string pk = fmt::format("robot.{}.pattern", half), dk = fmt::format("robot.{}.d_model", half);
      if (n.pattern.empty()) fail({pk}, fmt::format("'{}' is empty; give one character per sublayer: M, *, - or E", pk));
      for (size_t i = 0; i < n.pattern.size(); ++i)
        if (std::string("M*-E").find(n.pattern[i]) == std::string::npos)
          fail({pk}, fmt::format("{} has '{}' at position {}; allowed characters: M (Mamba), * (attention), - (MLP), E (MoE)",
                                 kv(c, pk), n.pattern[i], i + 1));
      range(c, dk, 1, true, 1 << 16);
      range(c, fmt::format("robot.{}.repeat", half), 1, true);
      const ModelConfig& m = c.model;
      if (n.pattern.find('*') != std::string::npos && n.d_model % m.attention.heads != 0)
        fail({"model.attention.heads", dk}, fmt::format("{} does not divide {} (the {}'s attention heads)",
                                                        kv(c, "model.attention.heads"), kv(c, dk), half));
      if (n.pattern.find('M') != std::string::npos && m.mamba.version == 2 &&
          (int64_t(m.mamba.expand) * n.d_model) % m.mamba.head_dim != 0)
        fail({"model.mamba.head_dim", dk}, fmt::format("Mamba-2 inner width model.mamba.expand * {} is not divisible by {}",
                                                       kv(c, dk), kv(c, "model.mamba.head_dim")));
    }
    range(c, "robot.planner_hz", 1, true);
    range(c, "robot.control_hz", 1, true);
    if (r.control_hz % r.planner_hz != 0)
      fail({"robot.control_hz", "robot.planner_hz"},
           fmt::format("{} is not a multiple of {}: the planner runs every control_hz / planner_hz control ticks",
                       kv(c, "robot.control_hz"), kv(c, "robot.planner_hz")));
    range(c, "robot.chunk", 0, true);
    range(c, "robot.latent", 0, true);
    if (r.chunk == 0 && r.latent == 0)
      fail({"robot.chunk", "robot.latent"}, "robot.chunk and robot.latent are both 0: the planner would output nothing");
    range(c, "robot.planner_delay_ticks", 0, true);
    range(c, "robot.window", 1, true);
    if (r.data.path.empty()) fail({"robot.data.path"}, "'robot.data.path' is empty: the robot policy trains on an episodes file");
    range(c, "robot.data.val_fraction", 0, true, 1, false);
  }

  // Checks that tie sizes together, on resolved values. Those involving d_model apply only to the
  // blocks the pattern uses: a transformer's unused mamba defaults must not reject its d_model.
  void check_shapes(const Config& c, bool head_dim_derived) const {
    const ModelConfig& m = c.model;
    const auto& a = m.attention;
    auto uses = [&](char ch) { return m.pattern.find(ch) != std::string::npos; };
    if (a.heads % a.kv_heads != 0)
      fail({"model.attention.kv_heads", "model.attention.heads"},
           fmt::format("{} does not divide {}: each key/value head serves heads / kv_heads query heads",
                       kv(c, "model.attention.kv_heads"), kv(c, "model.attention.heads")));
    if (uses('*') && a.kind == "gqa") {
      if (head_dim_derived && m.d_model % a.heads != 0)
        fail({"model.attention.heads", "model.d_model"},
             fmt::format("{} does not divide {} (head_dim is derived as d_model / heads); choose heads dividing {} or set "
                         "model.attention.head_dim",
                         kv(c, "model.attention.heads"), kv(c, "model.d_model"), m.d_model));
      if (a.rope && a.rope_dims == a.head_dim && a.head_dim % 2 != 0) {
        std::vector<std::string> keys = {"model.attention.head_dim"};
        if (head_dim_derived) keys = {"model.attention.heads", "model.d_model"};
        fail(keys, fmt::format("attention head_dim = {}{} is odd; RoPE rotates pairs of channels, so it must be even (or "
                               "set model.attention.rope_dims to an even number below it, or model.attention.rope: false)",
                               a.head_dim,
                               head_dim_derived ? fmt::format(" (derived from {} / {})", kv(c, "model.d_model"),
                                                              kv(c, "model.attention.heads"))
                                                : ""));
      }
      if (a.rope && (a.rope_dims % 2 != 0 || a.rope_dims > a.head_dim))
        fail({"model.attention.rope_dims"},
             fmt::format("{} must be even (RoPE rotates pairs of channels) and at most head_dim = {}",
                         kv(c, "model.attention.rope_dims"), a.head_dim));
    }
    if (uses('M') && m.mamba.version == 2) {
      const int64_t inner = int64_t(m.mamba.expand) * m.d_model;
      if (inner % m.mamba.head_dim != 0)
        fail({"model.mamba.head_dim", "model.mamba.expand", "model.d_model"},
             fmt::format("Mamba-2 inner width model.mamba.expand * model.d_model = {} * {} = {} is not divisible by {}", m.mamba.expand,
                         m.d_model, inner, kv(c, "model.mamba.head_dim")));
      const int64_t heads = inner / m.mamba.head_dim;
      if (heads % m.mamba.ngroups != 0)
        fail({"model.mamba.ngroups", "model.mamba.head_dim", "model.mamba.expand", "model.d_model"},
             fmt::format("Mamba-2 has expand * d_model / head_dim = {} * {} / {} = {} heads, not divisible by {}", m.mamba.expand,
                         m.d_model, m.mamba.head_dim, heads, kv(c, "model.mamba.ngroups")));
    }
  }

  // MLA sizes on resolved values (c); `written` is model.attention as written, to tell which ones
  // were derived from head_dim.
  void check_mla(const Config& c, const AttentionConfig& written) const {
    const auto& a = c.model.attention;
    if (a.kind != "mla" || c.model.pattern.find('*') == std::string::npos) return;
    auto bad = [&](const char* key, int value, bool derived, const char* rule, const char* want) {
      fail({key}, fmt::format("attention.kind=mla needs '{}' {}, got {}{}", key, want, value,
                              derived ? fmt::format(" (derived as {} from head_dim = {}; set it explicitly)", rule,
                                                    a.head_dim)
                                      : ""));
    };
    if (a.kv_lora_rank < 1)
      bad("model.attention.kv_lora_rank", a.kv_lora_rank, written.kv_lora_rank == 0, "4 * head_dim", ">= 1");
    if (a.qk_nope_head_dim < 1)
      bad("model.attention.qk_nope_head_dim", a.qk_nope_head_dim, written.qk_nope_head_dim == 0, "head_dim", ">= 1");
    if (a.v_head_dim < 1) bad("model.attention.v_head_dim", a.v_head_dim, written.v_head_dim == 0, "head_dim", ">= 1");
    if (a.qk_rope_head_dim < 2 || a.qk_rope_head_dim % 2 != 0)
      bad("model.attention.qk_rope_head_dim", a.qk_rope_head_dim, written.qk_rope_head_dim == 0, "head_dim / 4 * 2",
          "even and >= 2 (RoPE rotates pairs of channels)");
    if (!a.rope)
      fail({"model.attention.rope"}, "model.attention.rope=false cannot be combined with attention.kind=mla: MLA's "
                                     "rope key is its only positional part");
  }

  // Upper bounds: a model or batch that could never fit is refused here, naming the keys and the
  // memory, instead of hanging while millions of layers are built or ending in std::bad_alloc. The
  // estimate is a lower bound (weights, gradients and AdamW moments; the residual stream and one
  // normed copy per layer, logits and their gradient), compared with a fixed cap rather than this
  // machine's memory: the same config is read back from checkpoints on other machines.
  void check_sizes(const Config& c) const {
    const ModelConfig& m = c.model;
    double unit = 0;  // parameters of one pattern unit, from the blocks' own declarations
    try {
      ParamStore probe;  // add() only records shapes: nothing is allocated
      for (size_t i = 0; i < m.pattern.size(); ++i) make_block(m.pattern[i], m, probe, "layers." + std::to_string(i));
      for (auto& p : probe.infos()) unit += double(p.numel);
    } catch (const std::exception&) {
      return;  // the model build reports its own error
    }
    const double D = m.d_model, V = m.vocab_size, layers = double(m.pattern.size()) * m.repeat;
    unit += double(m.pattern.size()) * D;  // the pre-norm of each layer
    const double params = V * D * (m.tie_embeddings ? 1 : 2) + D + unit * m.repeat;
    const double param_bytes = 16 * params;
    const double tokens = double(c.train.batch) * c.train.seq;
    const double act_bytes = 4 * tokens * (2 * D * layers + 2 * V);
    auto bytes = [](double b) {
      return b >= 0x1p40 ? fmt::format("{:.3g} bytes ({:.1f} TiB)", b, b / 0x1p40) : fmt::format("{:.3g} bytes ({:.1f} GiB)", b, b / 0x1p30);
    };
    const std::string cap = fmt::format("at most {} bytes (1 TiB)", int64_t(kMaxTrainBytes));
    if (param_bytes > kMaxTrainBytes)
      fail({"model.repeat", "model.d_model", "model.pattern", "model.vocab_size"},
           fmt::format("{} x pattern '{}' ({} layers) at {} gives {:.3g} parameters; training them needs at least {} for "
                       "weights, gradients and AdamW moments (16 bytes each), above the bound of {}",
                       kv(c, "model.repeat"), m.pattern, int64_t(layers), kv(c, "model.d_model"), params, bytes(param_bytes), cap));
    if (act_bytes > kMaxTrainBytes || param_bytes + act_bytes > kMaxTrainBytes)
      fail({"train.batch", "train.seq"},
           fmt::format("{} x {} = {:.3g} tokens per micro-batch need at least {} of activations over {} layers at "
                       "d_model {} (plus {} for the parameters), above the bound of {}",
                       kv(c, "train.batch"), kv(c, "train.seq"), tokens, bytes(act_bytes), int64_t(layers), m.d_model,
                       bytes(param_bytes), cap));
  }
  static constexpr double kMaxTrainBytes = 0x1p40;

  std::string src_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> section_where_;
};

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source_name, const std::vector<std::string>& overrides) {
  Loader l(source_name);
  l.read_yaml(yaml_text);
  for (const auto& o : overrides) l.apply_override(o);
  return l.build();
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(fmt::format("config file '{}' not found", path));
  if (fs::is_directory(path, ec)) throw InputError(fmt::format("config file '{}' is a directory, not a YAML file", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("config file '{}' cannot be read", path));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  // yaml-cpp reads binary junk as a plain scalar or as nothing at all; a NUL never occurs in a text config.
  if (size_t nul = text.find('\0'); nul != std::string::npos)
    throw InputError(fmt::format("config file '{}' is not a YAML text file (a NUL byte at offset {}: a binary file?)", path, nul));
  return parse_config(text, path, overrides);
}

// data.eval_seqs only for the synthetic kinds, and data.<kind>.* only for the kind in use.
static bool data_key_in_use(const DataConfig& d, const std::string& key) {
  if (key == "data.eval_seqs") return d.kind != "text";
  for (const char* k : {"mqar", "selective_copying", "induction_heads"})
    if (key.rfind(fmt::format("data.{}.", k), 0) == 0) return d.kind == k;
  return true;
}

std::string to_yaml(const Config& c) {
  std::string out;
  std::vector<std::string> open;  // the sections currently open, outermost first
  for (const Field& f : schema().fields) {
    // A language model's dump stays as it was before the robot section existed (checkpoints, run
    // directories and the PyTorch peer's reader see no new section); parsing it back gives the
    // same defaults.
    if (!c.robot.enabled() && f.key.rfind("robot.", 0) == 0) continue;
    // Likewise a text run's data section: the synthetic kinds' keys appear only for the kind in use.
    if (!data_key_in_use(c.data, f.key)) continue;
    std::vector<std::string> path;
    for (size_t s = 0, d; (d = f.key.find('.', s)) != std::string::npos; s = d + 1) path.push_back(f.key.substr(s, d - s));
    size_t k = 0;
    while (k < open.size() && k < path.size() && open[k] == path[k]) ++k;
    open.resize(k);
    for (; k < path.size(); ++k) {
      out += std::string(2 * k, ' ') + path[k] + ":\n";
      open.push_back(path[k]);
    }
    std::string v = format_value(f, c);
    out += std::string(2 * path.size(), ' ') + last_of(f.key) + ": " + (f.kind == Kind::String ? yaml_quote(v) : v) + "\n";
  }
  return out;
}

std::vector<std::string> config_diff(const Config& a, const Config& b) {
  std::vector<std::string> d;
  for (const Field& f : schema().fields) {
    std::string va = format_value(f, a), vb = format_value(f, b);
    if (va != vb) d.push_back(fmt::format("{}: {} vs {}", f.key, va, vb));
  }
  return d;
}

std::vector<ConfigKey> config_schema() {
  const Config defaults;
  std::vector<ConfigKey> out;
  for (const Field& f : schema().fields) {
    std::string v = format_value(f, defaults);
    out.push_back({f.key, type_word(f.kind), f.kind == Kind::String ? yaml_quote(v) : v, f.help, f.allowed});
  }
  return out;
}

std::string config_help() {
  std::string out =
      "Config keys (YAML sections model, model.attention, model.mamba, model.mlp, model.moe, train, optim, data, robot).\n"
      "Override on the command line: key=value sets, +key=value adds a key the file lacks, ++key=value sets or adds,\n"
      "~key removes a key from the file (back to its default). 0 in a size means \"derive it\".\n\n";
  std::string section;
  for (const ConfigKey& k : config_schema()) {
    std::string sec = k.key.substr(0, k.key.find('.'));
    if (sec != section) {
      out += (section.empty() ? "" : "\n") + sec + ":\n";
      section = sec;
    }
    std::string help = k.help;
    if (!k.allowed.empty()) help += "; one of: " + join(k.allowed, ", ");
    out += fmt::format("  {:<28} {:<8} {:<9} {}\n", k.key, k.type, k.default_value, help);
  }
  return out;
}

}  // namespace strata
