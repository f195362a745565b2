// Episodes in robomimic's HDF5 layout: round trip, refusal of every kind of bad file with its reason
// (file, demo and key named), normalisation statistics against a hand computation, the episode
// split, window sampling at episode edges (padding + masks), and h5py both reading our files and
// writing one we read.
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "python_oracle.h"
#include "temp_dir.h"
#include "testing.h"
#include "train/episodes.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;

namespace {

struct TempDir : st::TempDir {
  TempDir() : st::TempDir("strata_episodes_") {}
};

Episode make_episode(int64_t T, uint64_t seed, std::optional<bool> success = std::nullopt) {
  Episode ep;
  ep.name = "demo_x";
  ep.length = T;
  ep.obs["joint_pos"] = {3, st::randn(size_t(T * 3), seed)};
  ep.obs["eef_pos"] = {2, st::randn(size_t(T * 2), seed + 1)};
  ep.actions = {4, st::uniform(size_t(T * 4), seed + 2, -1, 1)};
  ep.rewards = st::uniform(size_t(T), seed + 3, 0, 1);
  ep.dones.assign(size_t(T), 0);
  ep.dones.back() = 1;
  ep.success = success;
  return ep;
}

EpisodeSet make_set() {
  EpisodeSet s;
  s.env_args = R"({"env_name": "reach-v3", "type": 4, "env_kwargs": {"note": "αβγ ✓"}})";
  s.episodes = {make_episode(5, 10, true), make_episode(7, 20, false), make_episode(1, 30)};
  return s;
}

// Opens an episode file read-write for a test to damage it with HDF5 directly.
struct RawFile {
  hid_t f;
  explicit RawFile(const std::string& p) : f(H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) { EXPECT_GE(f, 0) << p; }
  ~RawFile() { H5Fclose(f); }
  void remove(const char* link) { ASSERT_GE(H5Ldelete(f, link, H5P_DEFAULT), 0) << link; }
  void floats(const char* name, std::vector<hsize_t> dims, const std::vector<float>& v) {
    hid_t sp = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
    hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(ds, 0) << name;
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Dclose(ds);
    H5Sclose(sp);
  }
  // Deleted and created again: HDF5 1.10 cannot rewrite an attribute in place in files made with
  // the latest format bounds ("can't locate open attribute").
  void set_int_attr(const char* obj, const char* name, int64_t v) {
    ASSERT_GE(H5Adelete_by_name(f, obj, name, H5P_DEFAULT), 0) << obj << " " << name;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(a, 0) << obj << " " << name;
    EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
    H5Aclose(a);
    H5Sclose(sp);
  }
};

void expect_refused(const std::string& path, const std::vector<std::string>& parts, const EpisodeExpect& expect = {}) {
  try {
    read_episodes(path, expect);
    ADD_FAILURE() << "read_episodes accepted a bad file; expected: " << parts.front();
  } catch (const InputError& e) {
    std::string msg = e.what();
    std::printf("  refused: %s\n", msg.c_str());
    EXPECT_NE(msg.find("'" + path + "'"), std::string::npos) << msg;  // names the file
    for (auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
  }
}

}  // namespace

TEST(Episodes, RoundTrip) {
  TempDir d;
  EpisodeSet s = make_set();
  write_episodes(d / "e.h5", s);
  EXPECT_FALSE(fs::exists(d / "e.h5.tmp"));
  EpisodeSet r = read_episodes(d / "e.h5");
  EXPECT_EQ(r.env_args, s.env_args);
  EXPECT_EQ(r.obs_keys, (std::vector<std::string>{"eef_pos", "joint_pos"}));
  EXPECT_EQ(r.obs_dims.at("joint_pos"), 3);
  EXPECT_EQ(r.action_dim, 4);
  ASSERT_EQ(r.episodes.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const Episode &a = s.episodes[i], &b = r.episodes[i];
    EXPECT_EQ(b.name, "demo_" + std::to_string(i));
    EXPECT_EQ(b.length, a.length);
    EXPECT_EQ(b.actions.data, a.actions.data);
    EXPECT_EQ(b.rewards, a.rewards);
    EXPECT_EQ(b.dones, a.dones);
    EXPECT_EQ(b.success, a.success);
    for (auto& [k, v] : a.obs) EXPECT_EQ(b.obs.at(k).data, v.data) << k;
  }
}

TEST(Episodes, RefusesBadFiles) {
  TempDir d;
  const EpisodeSet good = make_set();
  auto fresh = [&](const std::string& name) {
    std::string p = d / name;
    write_episodes(p, good);
    return p;
  };
  {  // missing keys
    std::string p = fresh("no_actions.h5");
    RawFile(p).remove("data/demo_1/actions");
    expect_refused(p, {"data/demo_1/actions", "missing dataset"});
    p = fresh("no_obs_key.h5");
    RawFile(p).remove("data/demo_2/obs/eef_pos");
    expect_refused(p, {"data/demo_2/obs", "has keys [joint_pos]", "[eef_pos, joint_pos]"});
    p = fresh("no_dones.h5");
    RawFile(p).remove("data/demo_0/dones");
    expect_refused(p, {"data/demo_0/dones", "missing dataset"});
    p = fresh("no_obs.h5");
    RawFile(p).remove("data/demo_0/obs");
    expect_refused(p, {"data/demo_0/obs", "missing group"});
    p = fresh("no_data.h5");
    RawFile(p).remove("data");
    expect_refused(p, {"data: missing group"});
    p = fresh("no_num_samples.h5");
    {
      RawFile f(p);
      ASSERT_GE(H5Adelete_by_name(f.f, "data/demo_1", "num_samples", H5P_DEFAULT), 0);
    }
    expect_refused(p, {"data/demo_1", "missing attribute 'num_samples'"});
  }
  {  // lengths that disagree across obs / actions / rewards / dones
    std::string p = fresh("short_rewards.h5");
    {
      RawFile f(p);
      f.remove("data/demo_1/rewards");
      f.floats("data/demo_1/rewards", {6}, std::vector<float>(6, 0.f));
    }
    expect_refused(p, {"data/demo_1/rewards", "has 6 steps but data/demo_1/actions has 7"});
    p = fresh("long_obs.h5");
    {
      RawFile f(p);
      f.remove("data/demo_0/obs/joint_pos");
      f.floats("data/demo_0/obs/joint_pos", {6, 3}, std::vector<float>(18, 0.f));
    }
    expect_refused(p, {"data/demo_0/obs/joint_pos", "has 6 steps but data/demo_0/actions has 5"});
  }
  {  // NaN / inf in actions and observations
    EpisodeSet s = good;
    s.episodes[1].actions.data[2 * 4 + 3] = NAN;
    write_episodes(d / "nan_action.h5", s);
    expect_refused(d / "nan_action.h5", {"data/demo_1/actions", "non-finite", "step 2, feature 3"});
    s = good;
    s.episodes[2].obs["eef_pos"].data[1] = INFINITY;
    write_episodes(d / "inf_obs.h5", s);
    expect_refused(d / "inf_obs.h5", {"data/demo_2/obs/eef_pos", "non-finite", "inf"});
  }
  {  // num_samples / total disagreeing with the data
    std::string p = fresh("num_samples.h5");
    RawFile(p).set_int_attr("data/demo_2", "num_samples", 2);
    expect_refused(p, {"data/demo_2", "num_samples is 2 but the demo has 1 steps"});
    p = fresh("total.h5");
    RawFile(p).set_int_attr("data", "total", 99);
    expect_refused(p, {"data: attribute total is 99 but its demos hold 13 steps"});
  }
  {  // what the caller (a checkpoint) expects
    std::string p = fresh("ok.h5");
    EXPECT_NO_THROW(read_episodes(p, {{"joint_pos", "eef_pos"}, {{"eef_pos", 2}}, 4}));
    expect_refused(p, {"data/demo_0/actions", "action dimension 4, expected 7"}, {{}, {}, 7});
    expect_refused(p, {"data/demo_0/obs", "observation keys [eef_pos, joint_pos], expected [joint_pos, object]"},
                   {{"joint_pos", "object"}, {}, 0});
    expect_refused(p, {"data/demo_0/obs/eef_pos", "dimension 2, expected 3"}, {{}, {{"eef_pos", 3}}, 0});
  }
  {  // episodes that disagree with each other: the writer refuses to make such a file, so damage one
    std::string p = fresh("dims.h5");
    {
      RawFile f(p);
      f.remove("data/demo_2/actions");
      f.floats("data/demo_2/actions", {1, 3}, std::vector<float>(3, 0.f));
    }
    expect_refused(p, {"data/demo_2/actions", "has dimension 3 but data/demo_0/actions has 4"});
  }
  {  // not an episode file at all
    std::ofstream(d / "text.h5") << "hello";
    expect_refused(d / "text.h5", {"not an HDF5 file"});
    expect_refused(d / "absent.h5", {"no such file"});
  }
}

TEST(Episodes, WriterRefusesInconsistentInput) {
  TempDir d;
  EpisodeSet s = make_set();
  s.episodes[1].rewards.pop_back();
  EXPECT_THROW(write_episodes(d / "x.h5", s), Error);
  s = make_set();
  s.episodes[2].actions.dim = 3;
  EXPECT_THROW(write_episodes(d / "x.h5", s), Error);
  EXPECT_FALSE(fs::exists(d / "x.h5"));
  EXPECT_FALSE(fs::exists(d / "x.h5.tmp"));
}

// Two episodes of a 1-d observation and a 2-d action, small enough to compute by hand.
TEST(Episodes, NormStatsByHand) {
  EpisodeSet s;
  auto ep = [](std::vector<float> o, std::vector<float> a) {
    Episode e;
    e.length = int64_t(o.size());
    e.obs["x"] = {1, o};
    e.actions = {2, a};
    e.rewards.assign(o.size(), 0.f);
    e.dones.assign(o.size(), 0);
    return e;
  };
  s.episodes = {ep({1, 2, 3}, {0, 5, 0, 5, 0, 5}), ep({10}, {1, 5}), ep({6, 6}, {100, 0, 100, 0})};
  // The train split is episodes 0 and 2: x = {1, 2, 3, 6, 6}, a0 = {0, 0, 0, 100, 100}, a1 = {5, 5, 5, 0, 0}.
  NormStats st = compute_norm_stats(s, {0, 2}, 0.5f);
  const double mx = 18.0 / 5, sx = std::sqrt((1 + 4 + 9 + 36 + 36) / 5.0 - mx * mx);
  EXPECT_NEAR(st.obs.at("x").mean[0], mx, 1e-6);
  EXPECT_NEAR(st.obs.at("x").std[0], sx, 1e-6);
  EXPECT_EQ(st.obs.at("x").min[0], 1.f);
  EXPECT_EQ(st.obs.at("x").max[0], 6.f);
  EXPECT_NEAR(st.actions.mean[0], 40, 1e-5);
  EXPECT_NEAR(st.actions.std[0], std::sqrt(20000 / 5.0 - 1600), 1e-4);  // 48.99
  EXPECT_NEAR(st.actions.mean[1], 3, 1e-6);
  EXPECT_NEAR(st.actions.std[1], std::sqrt(75 / 5.0 - 9), 1e-6);
  // A constant feature gets the floor, so normalising it stays finite.
  NormStats c = compute_norm_stats(s, {1}, 0.5f);
  EXPECT_EQ(c.obs.at("x").std[0], 0.5f);
  float in = 10, out = 0;
  c.obs.at("x").normalize(&in, &out);
  EXPECT_EQ(out, 0.f);
  float a[2] = {100, 0}, n[2], back[2];
  st.actions.normalize(a, n);
  st.actions.unnormalize(n, back);
  EXPECT_NEAR(back[0], 100, 1e-4);
  EXPECT_NEAR(back[1], 0, 1e-5);
  EXPECT_THROW(compute_norm_stats(s, {}, 0.5f), InputError);
}

// Saved into a group of an open file (as the checkpoint will) and loaded back exactly.
TEST(Episodes, NormStatsSaveLoad) {
  TempDir d;
  EpisodeSet s = make_set();
  NormStats st = compute_norm_stats(s, {0, 1, 2});
  std::string p = d / "stats.h5";
  {
    hid_t f = H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "norm_stats", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    save_norm_stats(g, st);
    H5Gclose(g);
    H5Fclose(f);
  }
  hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t g = H5Gopen2(f, "norm_stats", H5P_DEFAULT);
  EXPECT_EQ(load_norm_stats(g, "'stats.h5'/norm_stats"), st);
  // A damaged group is refused naming the member.
  H5Ldelete(g, "obs/eef_pos/std", H5P_DEFAULT);
  try {
    load_norm_stats(g, "'stats.h5'/norm_stats");
    ADD_FAILURE() << "accepted stats without obs/eef_pos/std";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("obs/eef_pos/std: missing dataset"), std::string::npos) << e.what();
  }
  H5Gclose(g);
  H5Fclose(f);
}

TEST(Episodes, SplitDeterministicAndDisjoint) {
  for (int64_t n : {2, 3, 10, 101}) {
    for (float frac : {0.01f, 0.1f, 0.5f, 0.9f}) {
      EpisodeSplit a = split_episodes(n, frac, 7), b = split_episodes(n, frac, 7);
      EXPECT_EQ(a.train, b.train);
      EXPECT_EQ(a.val, b.val);
      EXPECT_GE(a.train.size(), 1u) << n << " " << frac;
      EXPECT_GE(a.val.size(), 1u) << n << " " << frac;
      std::vector<int64_t> all = a.train;
      all.insert(all.end(), a.val.begin(), a.val.end());
      std::sort(all.begin(), all.end());
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(all[size_t(i)], i) << "not a partition of 0.." << n - 1;
    }
  }
  EXPECT_EQ(split_episodes(10, 0.3f, 1).val.size(), 3u);
  EXPECT_NE(split_episodes(100, 0.2f, 1).val, split_episodes(100, 0.2f, 2).val);  // the seed matters
  EXPECT_TRUE(split_episodes(5, 0.f, 1).val.empty());
  EXPECT_EQ(split_episodes(1, 0.5f, 1).train.size() + split_episodes(1, 0.5f, 1).val.size(), 1u);
  EXPECT_THROW(split_episodes(5, 1.f, 1), InputError);
  EXPECT_THROW(split_episodes(5, -0.1f, 1), InputError);
}

// Episode of 4 steps: obs x_t = 10 t (key "a") and 10 t + 1 (key "b"), action_t = (t, -t).
TEST(Episodes, WindowsAtEpisodeEdges) {
  EpisodeSet s;
  Episode e;
  e.length = 4;
  e.obs["b"] = {1, {1, 11, 21, 31}};
  e.obs["a"] = {1, {0, 10, 20, 30}};
  e.actions = {2, {0, 0, 1, -1, 2, -2, 3, -3}};
  e.rewards.assign(4, 0.f);
  e.dones = {0, 0, 0, 1};
  Episode other = e;
  other.actions = {2, std::vector<float>(8, 99.f)};
  s.episodes = {other, e};
  s.obs_keys = {"a", "b"};
  s.obs_dims = {{"a", 1}, {"b", 1}};
  s.action_dim = 2;
  EpisodeSampler sm(s, {1}, {/*history=*/3, /*horizon=*/3});
  EXPECT_EQ(sm.num_windows(), 4);
  EXPECT_EQ(sm.obs_dim(), 2);
  ASSERT_EQ(sm.obs_layout().size(), 2u);
  EXPECT_EQ(sm.obs_layout()[1].key, "b");
  WindowBatch w;
  sm.resize(w, 4);
  for (int64_t t = 0; t < 4; ++t) sm.window(t, w, t);
  // t = 0: history pads with step 0 (mask 0 0 1); actions 0, 1, 2 all real.
  EXPECT_EQ(std::vector<float>(w.obs.begin(), w.obs.begin() + 6), (std::vector<float>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(std::vector<float>(w.obs_mask.begin(), w.obs_mask.begin() + 3), (std::vector<float>{0, 0, 1}));
  EXPECT_EQ(std::vector<float>(w.actions.begin(), w.actions.begin() + 6), (std::vector<float>{0, 0, 1, -1, 2, -2}));
  EXPECT_EQ(std::vector<float>(w.action_mask.begin(), w.action_mask.begin() + 3), (std::vector<float>{1, 1, 1}));
  // t = 2: history 0, 1, 2 all real; actions 2, 3, then the last action repeated with mask 0.
  EXPECT_EQ(std::vector<float>(w.obs.begin() + 12, w.obs.begin() + 18), (std::vector<float>{0, 1, 10, 11, 20, 21}));
  EXPECT_EQ(std::vector<float>(w.obs_mask.begin() + 6, w.obs_mask.begin() + 9), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(std::vector<float>(w.actions.begin() + 12, w.actions.begin() + 18), (std::vector<float>{2, -2, 3, -3, 3, -3}));
  EXPECT_EQ(std::vector<float>(w.action_mask.begin() + 6, w.action_mask.begin() + 9), (std::vector<float>{1, 1, 0}));
  // t = 3, the last step: one real action, two repeats.
  EXPECT_EQ(std::vector<float>(w.actions.begin() + 18, w.actions.end()), (std::vector<float>{3, -3, 3, -3, 3, -3}));
  EXPECT_EQ(std::vector<float>(w.action_mask.begin() + 9, w.action_mask.end()), (std::vector<float>{1, 0, 0}));
  EXPECT_EQ(w.episode, (std::vector<int64_t>{1, 1, 1, 1}));  // never the other episode
  EXPECT_EQ(w.step, (std::vector<int64_t>{0, 1, 2, 3}));

  // With statistics the values come out normalised.
  NormStats st = compute_norm_stats(s, {1}, 1e-3f);
  EpisodeSampler norm(s, {1}, {1, 1}, &st);
  WindowBatch n;
  norm.resize(n, 1);
  norm.window(3, n, 0);
  EXPECT_NEAR(n.obs[0], (30 - 15) / std::sqrt(125.f), 1e-5);
  EXPECT_NEAR(n.actions[0], (3 - 1.5) / std::sqrt(1.25), 1e-5);
}

TEST(Episodes, SamplingDeterministicAndResumable) {
  EpisodeSet s = make_set();
  for (auto& [k, a] : s.episodes[0].obs) {
    s.obs_keys.push_back(k);
    s.obs_dims[k] = a.dim;
  }
  s.action_dim = 4;
  EpisodeSampler sm(s, {0, 1, 2}, {2, 4});
  EXPECT_EQ(sm.num_windows(), 13);
  Rng r1(5), r2(5);
  WindowBatch a, b, c;
  sm.sample(8, r1, a);
  sm.sample(8, r2, b);
  EXPECT_EQ(a.obs, b.obs);
  EXPECT_EQ(a.actions, b.actions);
  EXPECT_EQ(a.episode, b.episode);
  // Resuming from the saved (seed, counter) continues the same stream.
  Rng resumed(r1.seed, r1.counter);
  sm.sample(8, r1, a);
  sm.sample(8, resumed, c);
  EXPECT_EQ(a.step, c.step);
  EXPECT_EQ(a.actions, c.actions);
  // Every (episode, step) gets drawn eventually, episode 2 (one step) included.
  std::set<std::pair<int64_t, int64_t>> seen;
  Rng r(9);
  for (int i = 0; i < 50; ++i) {
    sm.sample(8, r, a);
    for (int64_t j = 0; j < 8; ++j) seen.insert({a.episode[size_t(j)], a.step[size_t(j)]});
  }
  EXPECT_EQ(seen.size(), 13u);
}

// h5py, an independent reader, sees robomimic's layout in our file; and a file h5py writes the way
// robomimic does (float64 obs, int64 dones, a variable-length env_args string, demo_10 after demo_2)
// reads back with the same numbers.
TEST(Episodes, H5pyBothWays) {
  std::string why;
  std::string py = st::test_python(&why);
  if (py.empty()) GTEST_SKIP() << "no Python test venv: " << why;
  TempDir d;
  EpisodeSet s = make_set();
  write_episodes(d / "ours.h5", s);
  std::string script = d / "rw.py";
  std::ofstream(script) << R"PY(
import sys, json, h5py, numpy as np
ours, theirs = sys.argv[1], sys.argv[2]
out = {}
with h5py.File(ours, "r") as f:
    data = f["data"]
    out["env_args"] = json.loads(data.attrs["env_args"])
    out["total"] = int(data.attrs["total"])
    out["demos"] = sorted(data.keys(), key=lambda k: int(k[5:]))
    d1 = data["demo_1"]
    out["num_samples"] = int(d1.attrs["num_samples"])
    out["success"] = int(d1.attrs["success"])
    out["obs_keys"] = sorted(d1["obs"].keys())
    out["joint_pos"] = d1["obs/joint_pos"][()].astype(float).tolist()
    out["actions"] = d1["actions"][()].astype(float).tolist()
    out["dones"] = d1["dones"][()].astype(int).tolist()
rng = np.random.default_rng(0)
with h5py.File(theirs, "w") as f:
    data = f.create_group("data")
    total = 0
    for i in [0, 2, 10]:
        T = 3 + i
        g = data.create_group(f"demo_{i}")
        g.create_dataset("obs/robot0_eef_pos", data=np.arange(T * 3, dtype=np.float64).reshape(T, 3) / 7)
        g.create_dataset("obs/object", data=np.full((T, 10), i, dtype=np.float64))
        g.create_dataset("next_obs/object", data=np.zeros((T, 10)))
        g.create_dataset("actions", data=np.linspace(-1, 1, T * 7).reshape(T, 7))
        g.create_dataset("rewards", data=np.zeros(T))
        g.create_dataset("dones", data=np.eye(1, T, T - 1, dtype=np.int64)[0])
        g.create_dataset("states", data=np.zeros((T, 32)))
        g.attrs["num_samples"] = T
        g.attrs["model_file"] = "<mujoco/>"
        total += T
    data.attrs["total"] = total
    data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
    f.create_dataset("mask/train", data=np.array([b"demo_0", b"demo_2"]))
print(json.dumps(out))
)PY";
  std::string out;
  int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(script) + " " + st::shell_quote(d / "ours.h5") + " " +
                               st::shell_quote(d / "theirs.h5"),
                           &out, true);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["env_args"], nlohmann::json::parse(s.env_args));
  EXPECT_EQ(j["total"], 13);
  EXPECT_EQ(j["demos"], (std::vector<std::string>{"demo_0", "demo_1", "demo_2"}));
  EXPECT_EQ(j["num_samples"], 7);
  EXPECT_EQ(j["success"], 0);
  EXPECT_EQ(j["obs_keys"], (std::vector<std::string>{"eef_pos", "joint_pos"}));
  EXPECT_EQ(j["dones"], (std::vector<int>{0, 0, 0, 0, 0, 0, 1}));
  auto jp = j["joint_pos"].get<std::vector<std::vector<double>>>();
  auto ac = j["actions"].get<std::vector<std::vector<double>>>();
  ASSERT_EQ(jp.size(), 7u);
  for (size_t t = 0; t < 7; ++t)
    for (size_t k = 0; k < 3; ++k) ASSERT_EQ(float(jp[t][k]), s.episodes[1].obs.at("joint_pos").data[t * 3 + k]);
  for (size_t t = 0; t < 7; ++t)
    for (size_t k = 0; k < 4; ++k) ASSERT_EQ(float(ac[t][k]), s.episodes[1].actions.data[t * 4 + k]);

  EpisodeSet r = read_episodes(d / "theirs.h5", {{"object", "robot0_eef_pos"}, {}, 7});
  EXPECT_EQ(nlohmann::json::parse(r.env_args)["env_name"], "Lift");
  ASSERT_EQ(r.episodes.size(), 3u);
  EXPECT_EQ(r.episodes[1].name, "demo_2");
  EXPECT_EQ(r.episodes[2].name, "demo_10");
  EXPECT_EQ(r.episodes[2].length, 13);
  EXPECT_EQ(r.obs_dims.at("object"), 10);
  EXPECT_EQ(r.episodes[2].obs.at("object").data[0], 10.f);
  EXPECT_EQ(r.episodes[1].obs.at("robot0_eef_pos").data[4], float(4.0 / 7));
  EXPECT_EQ(r.episodes[0].dones, (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_FALSE(r.episodes[0].success.has_value());
  EXPECT_EQ(r.episodes[0].actions.data.front(), -1.f);
  EXPECT_EQ(r.episodes[0].actions.data.back(), 1.f);
}
