// Hugging Face import / export, model-level parity with transformers 5.24 (issue 4).
//
// tests/hf_models.py builds, per architecture, a tiny random model with transformers (every
// parameter random, norms and SSM constants included), saves it with save_pretrained (+ a small
// byte-level BPE tokenizer.json) and writes its logits on fixed ids and 32 greedy tokens. Here the
// directory is imported without Python and compared: forward and decode logits (max abs diff
// <= 1e-4, fp32), greedy generations token for token (from ids and from text through the tokenizer),
// the .h5 import bit-exact with the on-the-fly one, then exported and reloaded by transformers'
// from_pretrained (no missing or unexpected keys, same logits). The second half needs no Python:
// strict refusals by name (config keys, stray and missing tensors) and export refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "infer/chat_template.h"
#include "infer/generate.h"
#include "load/model_loader.h"
#include "interop/hf_config.h"
#include "interop/hf_export.h"
#include "interop/hf_import.h"
#include "interop/hf_names.h"
#include "interop/safetensors.h"
#include "python_oracle.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/config_load.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;
using Json = nlohmann::json;

namespace {

const std::vector<std::string> kArchs = {"llama",  "llama3", "mixtral",     "mamba",
                                         "mamba2", "jamba",  "deepseek_v3", "deepseek_v3_noq"};

template <class T> std::vector<T> read_bin(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), {});
  std::vector<T> v(all.size() / sizeof(T));
  std::memcpy(v.data(), all.data(), v.size() * sizeof(T));
  return v;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

std::string g_refs_dir;

// The reference models, made once per test process by tests/hf_models.py.
struct Refs {
  std::string dir, python, why;
  bool ok = false;
};
const Refs& refs() {
  static Refs r = [] {
    Refs r;
    r.python = st::test_python(&r.why);
    if (r.python.empty()) return r;
    r.dir = (fs::temp_directory_path() / ("strata_hfio_" + std::to_string(getpid()))).string();
    fs::remove_all(r.dir);
    g_refs_dir = r.dir;
    std::string cmd = st::shell_quote(r.python) + " " + st::shell_quote(st::source_dir() + "/tests/hf_models.py") +
                      " make " + st::shell_quote(r.dir);
    for (auto& a : kArchs) cmd += " " + a;
    std::string out;
    int rc = st::run_command(cmd, &out, true);
    if (rc != 0) {
      r.why = "tests/hf_models.py make failed (rc " + std::to_string(rc) + "): " + out.substr(out.size() > 3000 ? out.size() - 3000 : 0);
      return r;
    }
    r.ok = true;
    return r;
  }();
  return r;
}

// Removes the reference directory when the test program ends.
struct RemoveRefs : ::testing::Environment {
  void TearDown() override {
    std::error_code ec;
    if (!g_refs_dir.empty()) fs::remove_all(g_refs_dir, ec);  // only if refs() ran
  }
};
[[maybe_unused]] ::testing::Environment* const kRemoveRefs = ::testing::AddGlobalTestEnvironment(new RemoveRefs);

struct Ref {
  std::string model;  // the save_pretrained directory
  std::vector<int32_t> ids, gen;
  std::vector<float> logits;
  Json meta;
};
Ref load_ref(const std::string& arch) {
  const std::string d = refs().dir + "/" + arch;
  Ref r;
  r.model = d + "/model";
  r.ids = read_bin<int32_t>(d + "/ids.bin");
  r.gen = read_bin<int32_t>(d + "/gen.bin");
  r.logits = read_bin<float>(d + "/logits.bin");
  r.meta = Json::parse(read_text(d + "/ref.json"));
  return r;
}

std::string export_dir_of(const std::string& arch) { return refs().dir + "/" + arch + "/export"; }

class HfParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!refs().ok) GTEST_SKIP() << refs().why;
  }
};

}  // namespace

// Import on the fly, forward and decode logits, greedy generation (ids and text), .h5 round trip,
// export (reloaded by transformers in HfExport.TransformersReloads).
TEST_P(HfParity, LogitsGenerationAndRoundTrip) {
  const std::string arch = GetParam();
  Ref ref = load_ref(arch);
  LoadedModel lm = load_model(ref.model);
  EXPECT_EQ(lm.config.model.vocab, "tokenizer");
  ASSERT_TRUE(lm.tokenizer);
  const int64_t T = int64_t(ref.ids.size()), V = lm.model->vocab();
  ASSERT_EQ(int64_t(ref.logits.size()), T * V);

  std::vector<float> fwd = score(*lm.model, ref.ids, ScoreMode::forward);
  std::vector<float> dec = score(*lm.model, ref.ids, ScoreMode::decode);
  const double dfwd = max_abs(fwd, ref.logits), ddec = max_abs(dec, ref.logits);

  GenerateOptions g;
  g.max_tokens = int(ref.gen.size());
  g.sampler.temperature = 0.0f;
  const int P = ref.meta["P"].get<int>();
  std::vector<int32_t> gen = generate(*lm.model, std::vector<int32_t>(ref.ids.begin(), ref.ids.begin() + P), g);

  // Text through the imported tokenizer.
  std::vector<int32_t> text_ids = encode_text(lm, ref.meta["prompt_text"].get<std::string>());
  EXPECT_EQ(text_ids, ref.meta["prompt_text_ids"].get<std::vector<int32_t>>());
  std::vector<int32_t> gen_text = generate(*lm.model, text_ids, g);

  // Import to a checkpoint file: the same model, bit for bit, with its tokenizer.
  const std::string h5 = refs().dir + "/" + arch + "/model.h5";
  save_weights_only(lm, h5);
  LoadedModel back = load_model(h5);
  EXPECT_EQ(back.tokenizer_json, lm.tokenizer_json);
  EXPECT_EQ(back.config.model.vocab, "tokenizer");
  EXPECT_EQ(score(*back.model, ref.ids, ScoreMode::forward), fwd);

  // Export, then import the export again: bit-exact (float32).
  HfExportResult ex = export_hf(back, export_dir_of(arch));
  EXPECT_EQ(hf_arch_info(ex.arch).class_name, ref.meta["class"].get<std::string>());
  LoadedModel again = load_model(export_dir_of(arch));
  EXPECT_EQ(score(*again.model, ref.ids, ScoreMode::forward), fwd);
  EXPECT_EQ(again.config.model.pattern, lm.config.model.pattern);

  std::printf("  %-16s forward max_abs %.3e   decode max_abs %.3e   greedy %s   text greedy %s\n", arch.c_str(), dfwd,
              ddec, gen == ref.gen ? "identical" : "DIFFERENT",
              gen_text == ref.meta["gen_text_ids"].get<std::vector<int32_t>>() ? "identical" : "DIFFERENT");
  EXPECT_LE(dfwd, 1e-4);
  EXPECT_LE(ddec, 1e-4);
  EXPECT_EQ(gen, ref.gen);
  EXPECT_EQ(gen_text, ref.meta["gen_text_ids"].get<std::vector<int32_t>>());
}

INSTANTIATE_TEST_SUITE_P(Archs, HfParity, ::testing::ValuesIn(kArchs), [](const auto& i) { return i.param; });

// Models made by strata (its own initialisation, byte vocabulary), one per exportable layout.
const std::vector<std::pair<std::string, std::string>> kNative = {
    {"native_llama", "model: {d_model: 48, pattern: '*-', repeat: 2, tie_embeddings: false, attention: {heads: 4, "
                     "kv_heads: 2, rope_type: linear, rope_factor: 2.0}, mlp: {hidden: 80}}\n"},
    {"native_mamba", "model: {d_model: 48, pattern: M, repeat: 2, mamba: {version: 1, d_state: 8, dt_rank: 5}}\n"},
    {"native_mamba2", "model: {d_model: 64, pattern: M, repeat: 2, mamba: {version: 2, head_dim: 16, ngroups: 2, "
                      "chunk: 8, d_state: 8}}\n"},
    {"native_jamba", "model: {d_model: 48, pattern: 'ME*-', repeat: 2, tie_embeddings: false, attention: {heads: 4, "
                     "kv_heads: 2, rope: false}, mamba: {version: 1, inner_norms: true, d_state: 8}, "
                     "moe: {experts: 4, top_k: 2, renorm: false}, mlp: {hidden: 64}}\n"},
};

// A native model's logits on fixed ids, in the layout hf_models.py reload reads; returns the class
// its export has.
std::string export_native(const std::string& name, const std::string& yaml) {
  const std::string d = refs().dir + "/" + name;
  fs::create_directories(d);
  LoadedModel lm;
  lm.config = parse_config(yaml, name + ".yaml");
  lm.model = std::make_unique<Model>(lm.config.model, 11);
  // Strata initialises norms and D to 1 and projections small: perturb every parameter (matrices
  // also scaled up, so that logits spread) so that a mapping mistake shows.
  ParamStore& ps = lm.model->params();
  std::vector<float> noise = st::uniform(size_t(ps.numel()), 12, 0.7f, 1.3f);
  for (auto& p : ps.infos())
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) ps.flat()[i] *= noise[size_t(i)] * (p.shape.size() >= 2 ? 4.0f : 1.0f);
  std::vector<int32_t> ids = {72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 0, 255, 128};
  std::vector<float> logits = score(*lm.model, ids, ScoreMode::forward);
  std::ofstream(d + "/ids.bin", std::ios::binary).write(reinterpret_cast<const char*>(ids.data()), std::streamsize(ids.size() * 4));
  std::ofstream(d + "/logits.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * 4));
  return hf_arch_info(export_hf(lm, d + "/export").arch).class_name;
}

// transformers loads every export back (one Python process for all): no missing, unexpected or
// mismatched keys, and logits equal to the original model's: the imports above, and models strata
// made itself.
TEST(HfExport, TransformersReloads) {
  if (!refs().ok) GTEST_SKIP() << refs().why;
  std::string cmd = st::shell_quote(refs().python) + " " + st::shell_quote(st::source_dir() + "/tests/hf_models.py") +
                    " reload " + st::shell_quote(refs().dir);
  size_t exported = 0;
  std::map<std::string, std::string> want_class;
  for (auto& [name, yaml] : kNative) {
    want_class[name] = export_native(name, yaml);
    cmd += " " + st::shell_quote(name + "=" + export_dir_of(name));
    ++exported;
  }
  for (auto& a : kArchs) {
    want_class[a] = load_ref(a).meta["class"];
    if (!fs::exists(export_dir_of(a) + "/config.json")) {  // run alone (gtest filter): export here
      try {
        LoadedModel lm = load_model(load_ref(a).model);
        export_hf(lm, export_dir_of(a));
      } catch (const std::exception& e) {
        ADD_FAILURE() << a << ": " << e.what();
        continue;
      }
    }
    cmd += " " + st::shell_quote(a + "=" + export_dir_of(a));
    ++exported;
  }
  std::string out;
  int rc = st::run_command(cmd + " 2>/dev/null", &out);
  ASSERT_EQ(rc, 0) << out;
  std::istringstream lines(out);
  std::string line;
  size_t seen = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    Json r = Json::parse(line);
    ++seen;
    const std::string arch = r["arch"];
    std::printf("  %-16s transformers reload: %s, max_abs %.3e, tokenizer %s\n", arch.c_str(),
                r["class"].get<std::string>().c_str(), r["max_abs_diff"].is_null() ? -1.0 : r["max_abs_diff"].get<double>(),
                !r.contains("tokenizer_ok") ? "none" : r["tokenizer_ok"].get<bool>() ? "ok" : "DIFFERENT");
    EXPECT_EQ(r["class"], want_class[arch]) << arch;
    EXPECT_TRUE(r["missing"].empty()) << arch << ": " << r["missing"].dump();
    EXPECT_TRUE(r["unexpected"].empty()) << arch << ": " << r["unexpected"].dump();
    EXPECT_TRUE(r["mismatched"].empty()) << arch << ": " << r["mismatched"].dump();
    ASSERT_FALSE(r["max_abs_diff"].is_null()) << arch << " logits shape " << r["shape"].dump();
    // An import reloads the very same weights (equal logits up to summation order); a native model
    // is strata's math against transformers' (the parity tolerance).
    EXPECT_LE(r["max_abs_diff"].get<double>(), arch.rfind("native_", 0) == 0 ? 1e-4 : 1e-5) << arch;
    if (arch.rfind("native_", 0) != 0) {
      EXPECT_TRUE(r.value("tokenizer_ok", false)) << arch;
    }
  }
  EXPECT_EQ(seen, exported) << out;
}

// The CLI end to end on one architecture: import, inspect, generate (text and ids), score, export.
TEST(HfCli, ImportInspectGenerateScoreExport) {
  if (!refs().ok) GTEST_SKIP() << refs().why;
  Ref ref = load_ref("llama");
  const std::string d = refs().dir + "/cli";
  fs::create_directories(d);
  auto r = st::run("import hf " + st::shell_quote(ref.model) + " -o m.h5", d);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("LlamaForCausalLM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote m.h5"), std::string::npos) << r.out;
  r = st::run("inspect " + st::shell_quote(ref.model), d);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("attention"), std::string::npos) << r.out;

  // Greedy from text, through the stored tokenizer, as ids.
  r = st::run("generate --ckpt m.h5 --prompt " + st::shell_quote(ref.meta["prompt_text"]) +
                  " --temperature 0 --max-tokens 32 --ignore-eos --print-ids",
              d);
  ASSERT_EQ(r.code, 0) << r.out;
  std::string want;
  for (int32_t t : ref.meta["gen_text_ids"].get<std::vector<int32_t>>()) want += std::to_string(t) + " ";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out << "\nwant: " << want;
  // And as text, from the HF directory directly.
  r = st::run("generate --ckpt " + st::shell_quote(ref.model) + " --prompt " + st::shell_quote(ref.meta["prompt_text"]) +
                  " --temperature 0 --max-tokens 4 --ignore-eos",
              d);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.rfind(ref.meta["prompt_text"].get<std::string>(), 0), 0u) << r.out;

  // Score by ids, decode mode, against transformers' logits.
  std::string ids;
  for (int32_t t : ref.ids) ids += std::to_string(t) + ",";
  st::write_text(d + "/ids.txt", ids);
  r = st::run("score --ckpt " + st::shell_quote(ref.model) + " --ids-file ids.txt --mode decode --out s.npy", d);
  ASSERT_EQ(r.code, 0) << r.out;
  std::string npy = read_text(d + "/s.npy");
  uint16_t hl;
  std::memcpy(&hl, npy.data() + 8, 2);
  std::vector<float> got((npy.size() - 10 - hl) / 4);
  std::memcpy(got.data(), npy.data() + 10 + hl, got.size() * 4);
  EXPECT_LE(max_abs(got, ref.logits), 1e-4);

  r = st::run("export hf m.h5 -o exported --dtype bfloat16", d);
  ASSERT_EQ(r.code, 0) << r.out;
  Json cfg = Json::parse(read_text(d + "/exported/config.json"));
  EXPECT_EQ(cfg["dtype"], "bfloat16");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(SafetensorsCheckpoint(d + "/exported").info("model.embed_tokens.weight").dtype, StDtype::BF16);
  EXPECT_TRUE(fs::exists(d + "/exported/tokenizer.json"));
  {  // bfloat16 weights read back (rounded), close to the float32 model.
    LoadedModel bf = load_model(d + "/exported");
    const double diff = max_abs(score(*bf.model, ref.ids, ScoreMode::forward), ref.logits);
    std::printf("  bfloat16 export re-imported: max_abs %.3e (weights rounded to bf16)\n", diff);
    EXPECT_LE(diff, 0.25);
  }
  // Sharded export (shards of ~200 KB + index) re-imports bit-exactly.
  r = st::run("export hf m.h5 -o sharded --max-shard-gb 0.0002 --quiet", d);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(d + "/sharded/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(d + "/sharded/model.safetensors"));
  EXPECT_EQ(score(*load_model(d + "/sharded").model, ref.ids, ScoreMode::forward),
            score(*load_model(d + "/m.h5").model, ref.ids, ScoreMode::forward));

  r = st::run("import hf /nonexistent/dir -o x.h5", d);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("not a directory"), std::string::npos) << r.out;
}

// `generate --chat`: the message goes through the model's chat template (its tokenizer_config.json)
// and the tokenizer without special tokens added again: the same prompt ids transformers'
// apply_chat_template(add_generation_prompt=True) gives, so the same greedy reply as from those ids.
TEST(HfCli, GenerateChatUsesTheChatTemplate) {
  if (!refs().ok) GTEST_SKIP() << refs().why;
  Ref ref = load_ref("llama");
  const std::string d = refs().dir + "/chat";
  fs::remove_all(d);
  fs::create_directories(d);
  fs::copy(ref.model, d + "/model", fs::copy_options::recursive);
  const std::string cfg_path = d + "/model/tokenizer_config.json";
  Json cfg = fs::exists(cfg_path) ? Json::parse(read_text(cfg_path)) : Json::object();
  cfg["chat_template"] =
      "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  std::ofstream(cfg_path) << cfg.dump(2);
  // transformers' prompt ids for the same conversation.
  const std::string py = "import sys\nfrom transformers import AutoTokenizer\n"
                         "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
                         "ids = t.apply_chat_template([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hello there'}],"
                         " add_generation_prompt=True, tokenize=True, return_dict=False)\n"
                         "print(','.join(str(i) for i in ids))\n";
  st::write_text(d + "/ids.py", py);
  std::string ids;
  ASSERT_EQ(st::run_command(st::shell_quote(refs().python) + " " + st::shell_quote(d + "/ids.py") + " " + st::shell_quote(d + "/model"), &ids), 0) << ids;
  while (!ids.empty() && (ids.back() == '\n' || ids.back() == ',')) ids.pop_back();
  ASSERT_FALSE(ids.empty());
  auto r = st::run("import hf model -o m.h5 --quiet", d);
  ASSERT_EQ(r.code, 0) << r.out;
  auto chat = st::run("generate --ckpt m.h5 --system 'Be brief.' --chat 'hello there' --temperature 0 --max-tokens 6 --ignore-eos --print-ids", d);
  ASSERT_EQ(chat.code, 0) << chat.out;
  auto by_ids = st::run("generate --ckpt m.h5 --prompt-ids " + ids + " --temperature 0 --max-tokens 6 --ignore-eos --print-ids", d);
  ASSERT_EQ(by_ids.code, 0) << by_ids.out;
  EXPECT_EQ(chat.out, by_ids.out) << "transformers' prompt ids: " << ids;
  // A model without a chat template says so.
  r = st::run("generate --ckpt " + st::shell_quote(ref.model) + " --chat hi --max-tokens 1", d);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("no chat template"), std::string::npos) << r.out;
}

// ---- no Python below --------------------------------------------------------------------------

namespace {

Json llama_json() {
  return Json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 16,
    "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "hidden_act": "silu", "max_position_embeddings": 128,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "attention_bias": false, "mlp_bias": false,
    "bos_token_id": 1, "eos_token_id": 2, "transformers_version": "5.24.0", "dtype": "float32"})");
}

std::string config_error(const Json& j) {
  try {
    hf_config_from_json(j, "cfg.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(accepted)";
}

void expect_has(const std::string& msg, const std::vector<std::string>& parts) {
  for (auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

// A Hugging Face directory written from a strata model of `cfg` (what export writes), for the
// strict-import tests.
std::string write_dir(const std::string& name, const Json& cfg, const std::function<void(std::vector<StTensorOut>&, std::vector<std::vector<float>>&)>& edit = nullptr) {
  HfConfig h = hf_config_from_json(cfg, "cfg.json");
  Model model(h.model, 3);
  std::vector<StTensorOut> ts;
  std::vector<std::vector<float>> extra;
  extra.reserve(16);
  const ParamStore& ps = model.params();
  for (auto& p : ps.infos())
    ts.push_back({hf_sources(h.arch, p.name).front().name, StDtype::F32, std::vector<int64_t>(p.shape.begin(), p.shape.end()),
                  ps.flat() + p.offset});
  if (edit) edit(ts, extra);
  const std::string d = (fs::temp_directory_path() / ("strata_hfio_dir_" + std::to_string(getpid()) + "_" + name)).string();
  fs::remove_all(d);
  write_safetensors_dir(d, ts, {{"format", "pt"}}, uint64_t(1) << 40);
  std::ofstream(d + "/config.json") << cfg.dump(2);
  return d;
}

std::string import_error(const std::string& dir) {
  try {
    load_model(dir);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(HfConfig, MapsLlamaAndWritesItBack) {
  HfConfig h = hf_config_from_json(llama_json(), "cfg.json");
  EXPECT_EQ(h.arch, HfArch::llama);
  EXPECT_EQ(h.layers, 2);
  EXPECT_EQ(h.model.pattern, "*-");
  EXPECT_EQ(h.model.repeat, 2);
  EXPECT_EQ(h.model.attention.heads, 4);
  EXPECT_EQ(h.model.attention.kv_heads, 2);
  EXPECT_EQ(h.model.attention.head_dim, 4);
  EXPECT_EQ(h.model.mlp.hidden, 32);
  EXPECT_FALSE(h.model.tie_embeddings);
  EXPECT_EQ(h.model.norm_eps, 1e-5f);
  Json back = hf_config_to_json(h.model, HfArch::llama, llama_json());
  for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings", "rope_parameters", "bos_token_id",
                        "eos_token_id", "max_position_embeddings"})
    EXPECT_EQ(back[k], llama_json()[k]) << k;
  // transformers 4 style RoPE keys read the same.
  Json v4 = llama_json();
  v4.erase("rope_parameters");
  v4["rope_theta"] = 500000.0;
  v4["rope_scaling"] = nullptr;
  EXPECT_EQ(hf_config_from_json(v4, "cfg.json").model.attention.rope_theta, 500000.0f);
  // Keys that change nothing are noted, unknown ones too: nothing passes without a word.
  Json odd = llama_json();
  odd["some_future_key"] = 3;
  odd["attention_dropout"] = 0.1;
  auto notes = hf_config_from_json(odd, "cfg.json").notes;
  std::string all;
  for (auto& n : notes) all += n + "\n";
  expect_has(all, {"some_future_key: unknown", "attention_dropout: training-time noise"});
  EXPECT_EQ(all.find("eos_token_id"), std::string::npos) << all;  // token ids are not worth a note
}

TEST(HfConfig, RefusesUnsupportedFeaturesByName) {
  struct Case {
    std::function<void(Json&)> edit;
    std::vector<std::string> want;
  };
  std::vector<Case> cases = {
      {[](Json& j) { j["attention_bias"] = true; }, {"cfg.json", "'attention_bias' = true", "attention biases", "LlamaForCausalLM"}},
      {[](Json& j) { j["mlp_bias"] = true; }, {"'mlp_bias' = true", "MLP biases"}},
      {[](Json& j) { j["hidden_act"] = "gelu"; }, {"'hidden_act' = \"gelu\"", "silu"}},
      {[](Json& j) { j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e4}, {"factor", 4.0}}; },
       {"'rope_parameters'", "'yarn'", "not supported"}},
      {[](Json& j) { j["quantization_config"] = {{"quant_method", "fp8"}}; }, {"'quantization_config'", "quantized"}},
      {[](Json& j) { j["architectures"] = {"LlamaForSequenceClassification"}; },
       {"'architectures'", "LlamaForSequenceClassification", "not supported", "MixtralForCausalLM"}},
      {[](Json& j) { j["model_type"] = "mistral"; }, {"'model_type' = \"mistral\"", "contradicts"}},
      {[](Json& j) { j["num_key_value_heads"] = 3; }, {"'num_key_value_heads' = 3", "divide"}},
      {[](Json& j) { j.erase("hidden_size"); }, {"'hidden_size' = absent", "required"}},
  };
  for (auto& c : cases) {
    Json j = llama_json();
    c.edit(j);
    expect_has(config_error(j), c.want);
  }
  Json mixtral = llama_json();
  mixtral["architectures"] = {"MixtralForCausalLM"};
  mixtral["model_type"] = "mixtral";
  mixtral["sliding_window"] = 4096;
  expect_has(config_error(mixtral), {"'sliding_window' = 4096", "sliding-window attention"});
  Json m2 = Json::parse(R"({"architectures": ["Mamba2ForCausalLM"], "vocab_size": 64, "hidden_size": 16,
    "num_hidden_layers": 1, "num_heads": 4, "head_dim": 8, "n_groups": 1, "state_size": 8, "expand": 2})");
  EXPECT_EQ(config_error(m2), "(accepted)");
  m2["time_step_limit"] = {0.0, 0.5};
  expect_has(config_error(m2), {"'time_step_limit'", "no clamping"});
  m2["num_heads"] = 3;
  expect_has(config_error(m2), {"'num_heads' = 3", "must equal expand * hidden_size"});
  Json ds = Json::parse(R"({"architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 64, "hidden_size": 16,
    "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "kv_lora_rank": 8,
    "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 4, "first_k_dense_replace": 1, "n_routed_experts": 8})");
  expect_has(config_error(ds), {"'first_k_dense_replace' = 1", "MoE layers", "not supported"});
}

TEST(HfConfig, ParsesPythonNonFiniteLiterals) {
  Json j = parse_hf_json(R"({"a": [0.0, Infinity], "b": -Infinity, "c": "Infinity in a string", "d": NaN})", "x.json");
  EXPECT_EQ(j["a"][1]["__float__"], "Infinity");
  EXPECT_EQ(j["b"]["__float__"], "-Infinity");
  EXPECT_EQ(j["c"], "Infinity in a string");
  EXPECT_THROW(parse_hf_json("{\"a\": ", "x.json"), InputError);
  // The Mamba-2 default written by older transformers imports.
  auto h = hf_config_from_json(parse_hf_json(R"({"architectures": ["Mamba2ForCausalLM"], "vocab_size": 64,
    "hidden_size": 16, "num_hidden_layers": 1, "num_heads": 4, "head_dim": 8, "n_groups": 1, "state_size": 8,
    "expand": 2, "time_step_limit": [0.0, Infinity]})", "x.json"), "x.json");
  EXPECT_EQ(h.model.mamba.version, 2);
}

TEST(HfImport, StrictAboutTensors) {
  // The clean directory imports and its logits survive export -> import bit for bit.
  std::string ok = write_dir("ok", llama_json());
  LoadedModel lm = load_model(ok);
  EXPECT_EQ(lm.config.model.vocab, "ids");
  EXPECT_THROW(encode_text(lm, "hi"), InputError);
  // A bias the config does not announce is refused by name.
  std::vector<float> bias(16, 0.5f);
  std::string extra = write_dir("extra", llama_json(), [&](auto& ts, auto&) {
    ts.push_back({"model.layers.1.self_attn.q_proj.bias", StDtype::F32, {16}, bias.data()});
  });
  expect_has(import_error(extra), {"model.layers.1.self_attn.q_proj.bias", "no place", "LlamaForCausalLM"});
  // A missing tensor names the HF tensor and the strata parameter.
  std::string missing = write_dir("missing", llama_json(), [](auto& ts, auto&) {
    std::erase_if(ts, [](auto& t) { return t.name == "model.layers.0.mlp.up_proj.weight"; });
  });
  expect_has(import_error(missing), {"'model.layers.0.mlp.up_proj.weight'", "missing", "layers.1.mlp.up_proj.weight"});
  // A wrong shape names both shapes.
  std::vector<float> wide(64 * 20, 0.0f);
  std::string shape = write_dir("shape", llama_json(), [&](auto& ts, auto&) {
    for (auto& t : ts)
      if (t.name == "model.embed_tokens.weight") t = {t.name, StDtype::F32, {64, 20}, wide.data()};
  });
  expect_has(import_error(shape), {"'model.embed_tokens.weight'", "[64, 20]", "[64, 16]"});
  // RoPE buffers of old checkpoints are skipped, as transformers skips them.
  std::vector<float> inv(2, 1.0f);
  std::string buffers = write_dir("buffers", llama_json(), [&](auto& ts, auto&) {
    ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", StDtype::F32, {2}, inv.data()});
  });
  EXPECT_NO_THROW(load_model(buffers));
  for (auto& d : {ok, extra, missing, shape, buffers}) fs::remove_all(d);
}

// Mixtral experts as transformers 5 fuses them in memory ([E, 2H, D] gate_up_proj, [E, D, H]
// down_proj under "mlp") import to the same model as the per-expert w1/w2/w3 save_pretrained writes.
TEST(HfImport, FusedExpertsEqualPerExpertTensors) {
  Json j = llama_json();
  j["architectures"] = {"MixtralForCausalLM"};
  j["model_type"] = "mixtral";
  j["num_local_experts"] = 3;
  j["num_experts_per_tok"] = 2;
  std::string per = write_dir("per_expert", j);
  std::string fused = write_dir("fused", j, [](std::vector<StTensorOut>& ts, std::vector<std::vector<float>>& keep) {
    std::vector<StTensorOut> out;
    std::map<std::string, std::map<std::string, const StTensorOut*>> by_layer;  // layer -> w1/w2/w3.e -> tensor
    for (auto& t : ts) {
      size_t p = t.name.find(".block_sparse_moe.");
      if (p == std::string::npos) {
        out.push_back(t);
        continue;
      }
      std::string layer = t.name.substr(0, p), rest = t.name.substr(p + 18);
      if (rest == "gate.weight") out.push_back({layer + ".mlp.gate.weight", t.dtype, t.shape, t.data});
      else by_layer[layer][rest] = &t;
    }
    const int64_t E = 3, H = 32, D = 16;
    for (auto& [layer, m] : by_layer) {
      keep.emplace_back();
      auto& gu = keep.back();
      for (int64_t e = 0; e < E; ++e)
        for (const char* w : {"w1", "w3"}) {
          const StTensorOut* t = m.at("experts." + std::to_string(e) + "." + w + ".weight");
          gu.insert(gu.end(), t->data, t->data + H * D);
        }
      keep.emplace_back();
      auto& dn = keep.back();
      for (int64_t e = 0; e < E; ++e) {
        const StTensorOut* t = m.at("experts." + std::to_string(e) + ".w2.weight");
        dn.insert(dn.end(), t->data, t->data + D * H);
      }
      out.push_back({layer + ".mlp.experts.gate_up_proj", StDtype::F32, {E, 2 * H, D}, keep[keep.size() - 2].data()});
      out.push_back({layer + ".mlp.experts.down_proj", StDtype::F32, {E, D, H}, keep.back().data()});
    }
    ts = out;
  });
  LoadedModel a = load_model(per), b = load_model(fused);
  std::vector<int32_t> ids = {1, 5, 9, 33, 2, 60, 7};
  EXPECT_EQ(score(*a.model, ids, ScoreMode::forward), score(*b.model, ids, ScoreMode::forward));
  for (auto& d : {per, fused}) fs::remove_all(d);
}

TEST(HfExport, RefusesModelsNoArchitectureExpresses) {
  Config c = parse_config("model: {d_model: 32, pattern: 'M*', repeat: 2}\n", "cfg.yaml");
  try {
    hf_arch_for(c.model);
    ADD_FAILURE() << "hybrid Mamba-2 + attention exported";
  } catch (const InputError& e) {
    expect_has(e.what(), {"no Hugging Face architecture", "'M*'", "LlamaForCausalLM", "Mamba2ForCausalLM"});
  }
  Config l = parse_config("model: {d_model: 32, pattern: '*-', repeat: 2, attention: {heads: 2}}\n", "cfg.yaml");
  EXPECT_EQ(hf_arch_for(l.model), HfArch::llama);
  Config m = parse_config("model: {d_model: 32, pattern: 'M', repeat: 2, mamba: {version: 1}}\n", "cfg.yaml");
  EXPECT_EQ(hf_arch_for(m.model), HfArch::mamba);
  // A strata-trained byte-level model exports (no tokenizer) and reimports to the same logits.
  LoadedModel lm;
  lm.config = l;
  lm.model = std::make_unique<Model>(l.model, 5);
  const std::string d = (fs::temp_directory_path() / ("strata_hfio_exp_" + std::to_string(getpid()))).string();
  export_hf(lm, d);
  LoadedModel back = load_model(d);
  std::vector<int32_t> ids = {104, 105, 33, 10};
  EXPECT_EQ(score(*back.model, ids, ScoreMode::forward), score(*lm.model, ids, ScoreMode::forward));
  fs::remove_all(d);
}

// The strata-only baselines of the mixer comparisons (issue 12) have no Hugging Face counterpart:
// export names the key instead of writing a config that would load as another model.
TEST(HfConfig, RefusesStrataOnlyBaselines) {
  HfConfig h = hf_config_from_json(llama_json(), "cfg.json");
  EXPECT_NO_THROW(hf_config_to_json(h.model, HfArch::llama, Json::object()));
  ModelConfig windowed = h.model;
  windowed.attention.window = 8;
  try {
    hf_config_to_json(windowed, HfArch::llama, Json::object());
    ADD_FAILURE() << "a sliding-window model exported as Llama";
  } catch (const InputError& e) {
    expect_has(e.what(), {"LlamaForCausalLM", "attention.window is 8"});
  }
  EXPECT_THROW(hf_arch_for(windowed, std::nullopt), InputError);

  ModelConfig m;
  m.pattern = "M";
  m.repeat = 2;
  m.mamba.version = 1;
  resolve(m);
  EXPECT_NO_THROW(hf_config_to_json(m, HfArch::mamba, Json::object()));
  m.mamba.selective = false;
  try {
    hf_config_to_json(m, HfArch::mamba, Json::object());
    ADD_FAILURE() << "a non-selective Mamba exported as MambaForCausalLM";
  } catch (const InputError& e) {
    expect_has(e.what(), {"MambaForCausalLM", "mamba.selective is false"});
  }
  EXPECT_THROW(hf_arch_for(m, std::nullopt), InputError);
}

// tokenizer_config.json (the chat template) survives import -> checkpoint -> load -> export byte for
// byte, and the loaded model renders with it; a directory without one imports with "".
TEST(HfImport, KeepsTokenizerConfigThroughCheckpointAndExport) {
  std::string d = write_dir("tokcfg", llama_json());
  const std::string tok_cfg =
      "{\n  \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<|begin_of_text|>\"},\n  \"eos_token\": \"<|eot_id|>\",\n"
      "  \"chat_template\": \"{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\\n\\n{{ "
      "m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\\n\\n{% "
      "endif %}\"\n}\n";
  std::ofstream(d + "/tokenizer_config.json") << tok_cfg;
  Checkpoint ck = import_hf(d);
  EXPECT_EQ(ck.tokenizer_config_json, tok_cfg);
  const std::string h5 = d + "/model.h5";
  save_checkpoint(h5, view_of(ck));
  LoadedModel lm = load_model(h5);
  ASSERT_EQ(lm.tokenizer_config_json, tok_cfg);
  ChatTemplate t = ChatTemplate::from_tokenizer_config(lm.tokenizer_config_json, h5);
  EXPECT_EQ(t.render({{"user", " hi "}}, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  const std::string out = d + "_export";
  fs::remove_all(out);
  export_hf(lm, out);
  std::ifstream f(out + "/tokenizer_config.json", std::ios::binary);
  std::string exported((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(exported, tok_cfg);
  EXPECT_EQ(load_model(out).tokenizer_config_json, tok_cfg);
  // Without one: nothing stored, nothing written.
  std::string plain = write_dir("tokcfg_plain", llama_json());
  EXPECT_EQ(load_model(plain).tokenizer_config_json, "");
  // chat_template.jinja (what transformers >= 4.43 saves) takes priority over the config's entry,
  // as in transformers, and is stored as the config's chat_template.
  std::string jinja_dir = write_dir("tokcfg_jinja", llama_json());
  std::ofstream(jinja_dir + "/tokenizer_config.json") << R"({"eos_token": "</s>", "chat_template": "old"})";
  std::ofstream(jinja_dir + "/chat_template.jinja") << "{% for m in messages %}[{{ m.content }}]{% endfor %}{{ eos_token }}\n";
  LoadedModel lj = load_model(jinja_dir);
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(lj.tokenizer_config_json, jinja_dir).render({{"user", "a"}, {"assistant", "b"}}, false),
            "[a][b]</s>");
  std::ofstream(jinja_dir + "/tokenizer_config.json", std::ios::trunc).close();
  fs::remove(jinja_dir + "/tokenizer_config.json");
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(load_model(jinja_dir).tokenizer_config_json, jinja_dir).render({{"user", "a"}}, true),
            "[a]");
  for (auto& x : {d, out, plain, jinja_dir}) fs::remove_all(x);
}
