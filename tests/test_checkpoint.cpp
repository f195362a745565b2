// Checkpoints: bit-exact round trip, refusal of every kind of damaged file with a reason, atomic
// saves (a kill mid-save never costs the previous checkpoint), pruning, and h5py as an outside reader.
#include <hdf5.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "python_oracle.h"
#include "temp_dir.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/crc32c.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;

namespace {

struct TempDir : st::TempDir {
  TempDir() : st::TempDir("strata_ckpt_") {}
};

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

NamedArray make_array(const std::string& name, Shape shape, uint64_t seed) {
  NamedArray a{name, shape, st::randn(size_t(numel(shape)), seed)};
  return a;
}

// Names with dots (HF style), odd shapes, a rank-0 scalar and an empty tensor; values that only a
// bit-exact path preserves (-0, denormals, the largest floats). Not NaN or infinity: a load refuses
// those (a checkpoint that holds them would train into NaN).
Checkpoint make_checkpoint(int64_t step = 1234, bool special_values = true) {
  Checkpoint ck;
  ck.config_yaml = "model:\n  d_model: 7\n  pattern: \"M-*E\"\n# unicode: αβγ ✓\ntrain: {steps: 10}\n";
  std::vector<std::pair<std::string, Shape>> specs = {{"embed.weight", {13, 7}},
                                                      {"layers.0.mixer.in_proj.weight", {3, 5, 2}},
                                                      {"layers.0.norm.weight", {7}},
                                                      {"a_scalar", {}},
                                                      {"empty.bias", {0, 4}},
                                                      {"layers.10.mixer.A_log", {1, 1, 33}}};
  uint64_t seed = 100;
  for (auto& [n, s] : specs) {
    ck.params.push_back(make_array(n, s, seed++));
    ck.adam_m.push_back(make_array(n, s, seed++));
    ck.adam_v.push_back(make_array(n, s, seed++));
  }
  if (special_values) {
    auto& w = ck.params[0].data;
    w[0] = std::numeric_limits<float>::max();
    w[1] = -std::numeric_limits<float>::denorm_min();
    w[2] = -0.0f;
    w[3] = std::numeric_limits<float>::denorm_min();
    w[4] = std::numeric_limits<float>::min();
    w[5] = -std::numeric_limits<float>::max();
  }
  ck.state.step = step;
  ck.state.rng_seed = ~uint64_t(0);
  ck.state.rng_counter = uint64_t(1) << 63;
  ck.state.data_cursor = 5;
  ck.state.tokens_seen = int64_t(1) << 40;
  return ck;
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void expect_same(const std::vector<NamedArray>& got, const std::vector<NamedArray>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].name) << what << " order";
    EXPECT_EQ(got[i].shape, want[i].shape) << what << " " << want[i].name;
    EXPECT_TRUE(bits_equal(got[i].data, want[i].data)) << what << " " << want[i].name << " not bit-exact";
  }
}

void expect_same(const Checkpoint& got, const Checkpoint& want) {
  EXPECT_EQ(got.config_yaml, want.config_yaml);
  expect_same(got.params, want.params, "params");
  expect_same(got.adam_m, want.adam_m, "adam_m");
  expect_same(got.adam_v, want.adam_v, "adam_v");
  EXPECT_TRUE(got.state == want.state);
  EXPECT_EQ(got.tokenizer_json, want.tokenizer_json);
  EXPECT_EQ(got.hf_config_json, want.hf_config_json);
}

using strata::testing::read_bytes;
void write_bytes(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), std::streamsize(s.size()));
}

// Expects load_checkpoint(path) to throw InputError whose message names the path and each of `parts`.
void expect_refused(const std::string& path, std::vector<std::string> parts) {
  try {
    load_checkpoint(path);
    ADD_FAILURE() << "load_checkpoint accepted " << path;
  } catch (const InputError& e) {
    std::string msg = e.what();
    std::printf("  refused: %s\n", msg.c_str());
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "expected '" << p << "' in: " << msg;
  }
  EXPECT_THROW(verify_checkpoint(path), InputError);
}

// Edits a saved file with the raw HDF5 API, to build files our writer never would.
template <class F> void edit_h5(const std::string& path, F f) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  f(file);
  H5Fclose(file);
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitExact) {
  TempDir d;
  Checkpoint ck = make_checkpoint();
  std::string p = d / "a.h5";
  save_checkpoint(p, ck);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  Checkpoint got = load_checkpoint(p);
  expect_same(got, ck);
  EXPECT_FALSE(got.strata_version.empty());
  EXPECT_FALSE(got.git_commit.empty());
  // Saving what was loaded gives the same tensors again (and overwrites in place).
  save_checkpoint(p, got);
  expect_same(load_checkpoint(p), ck);
  EXPECT_NO_THROW(verify_checkpoint(p));
  // A config bigger than HDF5's 64 KiB object-header message limit, and an empty one.
  for (size_t n : {size_t(200000), size_t(0)}) {
    ck.config_yaml.assign(n, 'y');
    save_checkpoint(p, ck);
    EXPECT_EQ(load_checkpoint(p).config_yaml, ck.config_yaml);
  }
}

TEST(Checkpoint, ViewsOfAFlatBufferSaveWithoutCopies) {
  TempDir d;
  // Three tensors carved out of one flat buffer, as the trainer's ParamStore lays them out.
  std::vector<float> flat = st::randn(5 * 3 + 11 + 2 * 2 * 2, 7), m = st::randn(flat.size(), 8),
                     v = st::uniform(flat.size(), 9, 0, 1);
  std::vector<std::pair<std::string, Shape>> specs = {{"w1", {5, 3}}, {"b1", {11}}, {"w2", {2, 2, 2}}};
  CheckpointView view;
  view.config_yaml = "x: 1\n";
  view.state.step = 3;
  int64_t off = 0;
  for (auto& [n, s] : specs) {
    view.params.push_back({n, s, flat.data() + off});
    view.adam_m.push_back({n, s, m.data() + off});
    view.adam_v.push_back({n, s, v.data() + off});
    off += numel(s);
  }
  std::string p = save_in_run_dir(d.path.string(), view, 2);
  EXPECT_EQ(fs::path(p).filename(), "ckpt-00000003.h5");
  Checkpoint got = load_checkpoint(p);
  off = 0;
  ASSERT_EQ(got.params.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t n = numel(specs[i].second);
    EXPECT_TRUE(bits_equal(got.params[i].data, std::vector<float>(flat.begin() + off, flat.begin() + off + n)));
    EXPECT_TRUE(bits_equal(got.adam_m[i].data, std::vector<float>(m.begin() + off, m.begin() + off + n)));
    EXPECT_TRUE(bits_equal(got.adam_v[i].data, std::vector<float>(v.begin() + off, v.begin() + off + n)));
    off += n;
  }
}

TEST(Checkpoint, WeightsOnlyCheckpointLoads) {
  TempDir d;
  Checkpoint ck = make_checkpoint();
  ck.adam_m.clear();
  ck.adam_v.clear();
  save_checkpoint(d / "w.h5", ck);
  expect_same(load_checkpoint(d / "w.h5"), ck);
}

TEST(Checkpoint, GarbageAndMissingFilesAreRefused) {
  TempDir d;
  expect_refused(d / "nope.h5", {"no such file"});
  write_bytes(d / "empty.h5", "");
  expect_refused(d / "empty.h5", {"not an HDF5 file"});
  write_bytes(d / "text.h5", "model:\n  d_model: 8\n");
  expect_refused(d / "text.h5", {"not an HDF5 file"});
  Rng r(3);
  std::string junk(100000, '\0');
  for (auto& c : junk) c = char(r.next_u32());
  write_bytes(d / "junk.h5", junk);
  expect_refused(d / "junk.h5", {"not an HDF5 file"});
  fs::create_directories(d / "dir.h5");
  expect_refused(d / "dir.h5", {"not a regular file"});
  // A valid HDF5 file that is not a checkpoint.
  hid_t f = H5Fcreate((d / "other.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  expect_refused(d / "other.h5", {"format_version"});
}

TEST(Checkpoint, TruncatedFilesAreRefused) {
  TempDir d;
  std::string p = d / "full.h5";
  save_checkpoint(p, make_checkpoint());
  std::string bytes = read_bytes(p);
  std::printf("  checkpoint file is %zu bytes\n", bytes.size());
  for (size_t keep : {size_t(0), size_t(7), size_t(100), size_t(1000), bytes.size() / 2, bytes.size() - 100, bytes.size() - 1}) {
    std::string t = d / ("cut" + std::to_string(keep) + ".h5");
    write_bytes(t, bytes.substr(0, keep));
    expect_refused(t, {});
  }
}

TEST(Checkpoint, FlippedByteInDatasetIsRefusedNamingIt) {
  TempDir d;
  std::string p = d / "c.h5";
  Checkpoint ck = make_checkpoint();
  save_checkpoint(p, ck);
  std::string bytes = read_bytes(p);
  for (std::string ds : {"/params/layers.0.mixer.in_proj.weight", "/optim/v/layers.10.mixer.A_log", "/optim/m/a_scalar"}) {
    // Where HDF5 put the dataset's raw bytes (contiguous layout).
    haddr_t off = HADDR_UNDEF;
    hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t h = H5Dopen2(f, ds.c_str(), H5P_DEFAULT);
    off = H5Dget_offset(h);
    H5Dclose(h);
    H5Fclose(f);
    ASSERT_NE(off, HADDR_UNDEF) << ds;
    std::string bad = bytes;
    bad[size_t(off) + 2] ^= 0x10;  // one bit of one float
    std::string t = d / "flipped.h5";
    write_bytes(t, bad);
    expect_refused(t, {"checksum mismatch", ds});
  }
}

// Any single flipped bit anywhere must either be refused or leave the loaded content identical
// (padding and unused space exist); never a silently different checkpoint, a crash or a hang.
// Runs in a child process: HDF5 1.10 leaks internal state after some metadata checksum failures
// (no handle of ours stays open) and then complains when the library shuts down at exit.
TEST(Checkpoint, RandomByteFlipsNeverLoadWrongData) {
  TempDir d;
  std::string p = d / "c.h5";
  Checkpoint ck = make_checkpoint(7, /*special_values=*/false);
  save_checkpoint(p, ck);
  std::string bytes = read_bytes(p);
  const int trials = 300;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    alarm(60);  // a hang becomes SIGALRM, reported below
    Rng r(11);
    int refused = 0, identical = 0;
    std::string t = d / "flip.h5", report;
    for (int i = 0; i < trials && report.empty(); ++i) {
      std::string bad = bytes;
      size_t at = size_t(r.below(bytes.size()));
      bad[at] = char(bad[at] ^ (1 << r.below(8)));
      write_bytes(t, bad);
      try {
        Checkpoint got = load_checkpoint(t);
        expect_same(got, ck);
        if (::testing::Test::HasFailure()) report = "flip at byte " + std::to_string(at) + " loaded different data";
        ++identical;
      } catch (const InputError&) {
        ++refused;
      }
    }
    if (report.empty()) report = std::to_string(refused) + " " + std::to_string(identical);
    if (write(fds[1], report.data(), report.size()) < 0) _exit(2);
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  char buf[256];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) report.append(buf, size_t(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << (WIFSIGNALED(st) ? "child killed by signal " + std::to_string(WTERMSIG(st)) : "child failed") << ": " << report;
  int refused = -1, identical = -1;
  ASSERT_EQ(std::sscanf(report.c_str(), "%d %d", &refused, &identical), 2) << report;
  std::printf("  %d random bit flips: %d refused, %d harmless (content identical)\n", trials, refused, identical);
  EXPECT_EQ(refused + identical, trials);
  EXPECT_GT(refused, trials / 2);
}

TEST(Checkpoint, StructuralDamageIsRefusedWithTheReason) {
  TempDir d;
  std::string p = d / "c.h5";
  save_checkpoint(p, make_checkpoint());
  std::string t = d / "t.h5";
  auto fresh = [&] { fs::copy_file(p, t, fs::copy_options::overwrite_existing); };

  fresh();
  edit_h5(t, [](hid_t f) { H5Ldelete(f, "/state", H5P_DEFAULT); });
  expect_refused(t, {"missing group '/state'"});

  fresh();
  edit_h5(t, [](hid_t f) { H5Ldelete(f, "/optim", H5P_DEFAULT); });
  expect_refused(t, {"missing group '/optim/m'"});

  fresh();
  edit_h5(t, [](hid_t f) { H5Adelete_by_name(f, "/state", "rng_counter", H5P_DEFAULT); });
  expect_refused(t, {"rng_counter", "/state"});

  fresh();
  edit_h5(t, [](hid_t f) { H5Adelete_by_name(f, "/params/layers.0.norm.weight", "crc32c", H5P_DEFAULT); });
  expect_refused(t, {"crc32c", "/params/layers.0.norm.weight"});

  fresh();
  edit_h5(t, [](hid_t f) { H5Ldelete(f, "/params/embed.weight", H5P_DEFAULT); });
  expect_refused(t, {"/optim/m"});  // m no longer mirrors params

  fresh();
  edit_h5(t, [](hid_t f) {
    int64_t v = 99;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  });
  expect_refused(t, {"format version 99", "reads version 1"});

  fresh();
  edit_h5(t, [](hid_t f) {
    uint32_t v = 0;
    hid_t a = H5Aopen(f, "config_crc32c", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT32, &v);
    H5Aclose(a);
  });
  expect_refused(t, {"'config'"});

  // A dataset of the wrong type.
  fresh();
  edit_h5(t, [](hid_t f) {
    hsize_t n = 3;
    hid_t s = H5Screate_simple(1, &n, nullptr);
    hid_t ds = H5Dcreate2(f, "/params/zz", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(s);
  });
  expect_refused(t, {"'/params/zz' is not float32"});
}

TEST(Checkpoint, InvalidSavesThrowAndLeaveNothingBehind) {
  TempDir d;
  std::string p = d / "x.h5";
  Checkpoint ck = make_checkpoint();
  ck.params[1].name = "layers/0";
  EXPECT_THROW(save_checkpoint(p, ck), Error);
  ck = make_checkpoint();
  ck.params[2].name = ck.params[0].name;
  ck.adam_m[2].name = ck.adam_v[2].name = ck.params[0].name;
  EXPECT_THROW(save_checkpoint(p, ck), Error);
  ck = make_checkpoint();
  ck.adam_v[3].shape = {2};
  ck.adam_v[3].data.resize(2);
  EXPECT_THROW(save_checkpoint(p, ck), Error);
  ck = make_checkpoint();
  ck.params[0].data.pop_back();  // data does not match the shape
  EXPECT_THROW(save_checkpoint(p, ck), Error);
  EXPECT_TRUE(files_in(d.path).empty());
}

TEST(Checkpoint, FailedSaveKeepsThePreviousFile) {
  TempDir d;
  std::string p = d / "x.h5";
  Checkpoint old = make_checkpoint(1);
  save_checkpoint(p, old);
  // The .tmp cannot be created (a directory is in the way): the save fails, the old file survives.
  fs::create_directories(p + ".tmp/blocker");
  EXPECT_THROW(save_checkpoint(p, make_checkpoint(2)), Error);
  expect_same(load_checkpoint(p), old);
  EXPECT_THROW(save_checkpoint(d / "no/such/dir/x.h5", old), Error);
}

TEST(Checkpoint, PruningKeepsTheNewestK) {
  TempDir d;
  std::string run = d.path.string();
  write_bytes(d / "notes.txt", "keep me");
  write_bytes(d / "ckpt-abc.h5", "not ours");
  Checkpoint ck = make_checkpoint(0, false);
  std::string last;
  for (int64_t s : {5, 10, 15, 20, 25, 30}) {
    ck.state.step = s;
    last = save_in_run_dir(run, ck, 3);
  }
  EXPECT_EQ(last, d / "ckpt-00000030.h5");
  EXPECT_EQ(files_in(d.path), (std::vector<std::string>{"ckpt-00000020.h5", "ckpt-00000025.h5", "ckpt-00000030.h5",
                                                         "ckpt-abc.h5", "notes.txt"}));
  // An older step saved later (e.g. after a manual rollback) is kept even though it is not among
  // the newest K; the oldest of those goes.
  ck.state.step = 7;
  save_in_run_dir(run, ck, 3);
  EXPECT_EQ(files_in(d.path), (std::vector<std::string>{"ckpt-00000007.h5", "ckpt-00000025.h5", "ckpt-00000030.h5",
                                                         "ckpt-abc.h5", "notes.txt"}));
  ck.state.step = 123456789;  // more than 8 digits sorts by number, not by name
  save_in_run_dir(run, ck, 1);
  EXPECT_EQ(files_in(d.path), (std::vector<std::string>{"ckpt-123456789.h5", "ckpt-abc.h5", "notes.txt"}));
  EXPECT_EQ(newest_good_checkpoint(run).value_or(""), d / "ckpt-123456789.h5");
  EXPECT_THROW(save_in_run_dir(run, ck, 0), Error);
}

TEST(Checkpoint, NewestGoodSkipsDamagedAndIgnoresTmp) {
  TempDir d;
  std::string run = d.path.string(), why = "stale";
  EXPECT_FALSE(newest_good_checkpoint(run, &why).has_value());
  EXPECT_TRUE(why.empty());
  EXPECT_FALSE(newest_good_checkpoint(d / "missing_dir", &why).has_value());

  Checkpoint ck = make_checkpoint(10);
  save_in_run_dir(run, ck, 5);
  ck.state.step = 20;
  std::string good = save_in_run_dir(run, ck, 5);
  // A save of step 30 killed before its rename: a half-written .tmp.
  std::string bytes = read_bytes(good);
  write_bytes(d / "ckpt-00000030.h5.tmp", bytes.substr(0, bytes.size() / 2));
  EXPECT_EQ(newest_good_checkpoint(run, &why).value_or(""), good);
  EXPECT_TRUE(why.empty()) << why;
  // Newer but damaged checkpoints are skipped, each with its reason.
  write_bytes(d / "ckpt-00000040.h5", bytes.substr(0, bytes.size() - 10));
  write_bytes(d / "ckpt-00000050.h5", "garbage");
  EXPECT_EQ(newest_good_checkpoint(run, &why).value_or(""), good);
  std::printf("  why skipped: %s\n", why.c_str());
  EXPECT_NE(why.find("ckpt-00000050.h5"), std::string::npos);
  EXPECT_NE(why.find("ckpt-00000040.h5"), std::string::npos);
  EXPECT_NE(why.find("not an HDF5 file"), std::string::npos);
  EXPECT_EQ(why.find(".tmp"), std::string::npos);
  expect_same(load_checkpoint(good), ck);
  // Resuming and saving again clears the leftover .tmp.
  fs::remove(d / "ckpt-00000040.h5");
  fs::remove(d / "ckpt-00000050.h5");
  ck.state.step = 30;
  EXPECT_EQ(save_in_run_dir(run, ck, 5), d / "ckpt-00000030.h5");
  EXPECT_FALSE(fs::exists(d / "ckpt-00000030.h5.tmp"));
  EXPECT_EQ(newest_good_checkpoint(run).value_or(""), d / "ckpt-00000030.h5");
}

// A real kill: a child process saves a large checkpoint and is SIGKILLed at varying moments. Whatever
// the moment, the run dir must resume from a complete checkpoint (the old one or the new one).
TEST(Checkpoint, KillDuringSaveNeverLosesTheLastCheckpoint) {
  TempDir d;
  std::string run = d.path.string();
  Checkpoint small = make_checkpoint(1, false);
  save_in_run_dir(run, small, 2);
  CheckpointView big;
  std::vector<float> data = st::randn(1 << 20, 5);  // 4 MiB, viewed 3 x 3 times
  for (int i = 0; i < 3; ++i)
    for (auto* g : {&big.params, &big.adam_m, &big.adam_v}) g->push_back({fmt::format("w{}", i), {1 << 20}, data.data()});
  big.state.step = 2;
  int saw_old = 0, saw_new = 0;
  for (int delay_us : {0, 1000, 5000, 20000, 60000, 150000, 1000000}) {
    fs::remove(d / "ckpt-00000002.h5");
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        save_in_run_dir(run, big, 2);
      } catch (...) {
        _exit(3);
      }
      _exit(0);
    }
    usleep(useconds_t(delay_us));
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    ASSERT_FALSE(WIFEXITED(st) && WEXITSTATUS(st) != 0) << "child failed to save";
    std::string why;
    auto got = newest_good_checkpoint(run, &why);
    ASSERT_TRUE(got.has_value()) << why;
    Checkpoint ck = load_checkpoint(*got);
    if (ck.state.step == 1) {
      ++saw_old;
      expect_same(ck, small);
    } else {
      ++saw_new;
      ASSERT_EQ(ck.params.size(), 3u);
      for (auto& a : ck.params) EXPECT_TRUE(bits_equal(a.data, data));
    }
  }
  std::printf("  kills: %d resumed from the previous checkpoint, %d from the new one\n", saw_old, saw_new);
}

// h5py, an independent reader, sees the documented layout and the same numbers.
TEST(Checkpoint, H5pyReadsTheLayout) {
  std::string why;
  std::string py = st::test_python(&why);
  if (py.empty()) GTEST_SKIP() << "no Python test venv: " << why;
  TempDir d;
  Checkpoint ck = make_checkpoint(42, /*special_values=*/false);  // JSON has no NaN/inf
  std::string p = d / "c.h5";
  save_checkpoint(p, ck);
  std::string out;
  int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/tests/checkpoint_read.py") +
                                    " " + st::shell_quote(p),
                                &out);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["attrs"]["config"], ck.config_yaml);
  EXPECT_EQ(j["attrs"]["format_version"], kCheckpointFormatVersion);
  EXPECT_TRUE(j["attrs"]["strata_version"].is_string());
  EXPECT_TRUE(j["attrs"]["git_commit"].is_string());
  EXPECT_EQ(j["state"]["step"], 42);
  EXPECT_EQ(j["state"]["rng_seed"].get<uint64_t>(), ck.state.rng_seed);
  EXPECT_EQ(j["state"]["rng_counter"].get<uint64_t>(), ck.state.rng_counter);
  EXPECT_EQ(j["state"]["data_cursor"], ck.state.data_cursor);
  EXPECT_EQ(j["state"]["tokens_seen"], ck.state.tokens_seen);
  for (auto [key, arrays] : {std::pair{"params", &ck.params}, {"m", &ck.adam_m}, {"v", &ck.adam_v}}) {
    ASSERT_EQ(j[key].size(), arrays->size()) << key;
    for (auto& a : *arrays) {
      auto& e = j[key][a.name];
      EXPECT_EQ(e["dtype"], "float32");
      EXPECT_EQ(e["shape"].get<Shape>(), a.shape) << a.name;
      EXPECT_EQ(e["crc32c"].get<uint32_t>(), crc32c(a.data.data(), a.data.size() * 4)) << a.name;
      std::vector<double> vals = e["values"].get<std::vector<double>>();
      ASSERT_EQ(vals.size(), a.data.size()) << a.name;
      for (size_t i = 0; i < vals.size(); ++i) ASSERT_EQ(float(vals[i]), a.data[i]) << a.name << "[" << i << "]";
    }
  }
}

// Models imported from Hugging Face carry their tokenizer.json and config.json: optional root
// attributes, checksummed like the config, absent when empty (files without them still load).
TEST(Checkpoint, TokenizerAndHfConfigRoundTrip) {
  TempDir d;
  Checkpoint ck = make_checkpoint(7, false);
  std::string p = d / "t.h5";
  save_checkpoint(p, ck);
  Checkpoint plain = load_checkpoint(p);
  EXPECT_EQ(plain.tokenizer_json, "");
  EXPECT_EQ(plain.hf_config_json, "");
  // Bigger than HDF5's 64 KiB compact attribute limit, with non-ASCII text, as real tokenizers are.
  std::string tok = R"({"version": "1.0", "model": {"type": "BPE", "vocab": {)";
  for (int i = 0; i < 20000; ++i) tok += fmt::format("\"tok{}\u00e9✓\": {}, ", i, i);
  tok += "\"end\": 20000}}}";
  ck.tokenizer_json = tok;
  ck.hf_config_json = R"({"architectures": ["LlamaForCausalLM"], "rope_parameters": {"rope_theta": 10000.0}})";
  save_checkpoint(p, ck);
  Checkpoint got = load_checkpoint(p);
  expect_same(got, ck);
  EXPECT_NO_THROW(verify_checkpoint(p));
  {  // The attributes are visible to other HDF5 readers under their names.
    hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    EXPECT_GT(H5Aexists(f, "tokenizer_json"), 0);
    EXPECT_GT(H5Aexists(f, "hf_config_json_crc32c"), 0);
    H5Fclose(f);
  }
  // A flipped byte inside the stored tokenizer text is caught by its checksum.
  std::string bytes = read_bytes(p);
  size_t at = bytes.find("tok12345");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 3] = 'X';
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  try {
    load_checkpoint(p);
    ADD_FAILURE() << "corrupt tokenizer_json accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_json"), std::string::npos) << e.what();
  }
}

// The imported tokenizer_config.json (chat template, special tokens): the same optional, checksummed
// root attribute; older files without it load with "".
TEST(Checkpoint, TokenizerConfigRoundTrip) {
  TempDir d;
  Checkpoint ck = make_checkpoint(7, false);
  std::string p = d / "t.h5";
  save_checkpoint(p, ck);
  EXPECT_EQ(load_checkpoint(p).tokenizer_config_json, "");
  // Past HDF5's 64 KiB compact attribute limit (as the tokenizer test), so the text lives in the
  // global heap, which only our checksum covers.
  ck.tokenizer_config_json = R"({"chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}", "eos_token": "</s>", "note": "ünïcode ✓)";
  ck.tokenizer_config_json.append(70000, 'x');
  ck.tokenizer_config_json += "\"}";
  save_checkpoint(p, ck);
  EXPECT_EQ(load_checkpoint(p).tokenizer_config_json, ck.tokenizer_config_json);
  EXPECT_EQ(load_checkpoint(p).tokenizer_json, "");
  std::string bytes = read_bytes(p);
  size_t at = bytes.find("ünïcode");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 3] = 'X';
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  try {
    load_checkpoint(p);
    ADD_FAILURE() << "corrupt tokenizer_config_json accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config_json"), std::string::npos) << e.what();
  }
}

// A checkpoint whose checksums are all valid can still hold what no training run writes: a negative
// step (the schedule would then run at a negative learning rate) or non-finite values. Refused by
// name, by load and by verify (so a run directory falls back to an older good checkpoint).
TEST(Checkpoint, NegativeCountersAndNonFiniteValuesAreRefused) {
  TempDir d;
  Checkpoint ck = make_checkpoint(-3, false);
  save_checkpoint(d / "neg_step.h5", ck);
  expect_refused(d / "neg_step.h5", {"'/state'", "step", "-3"});
  ck = make_checkpoint(5, false);
  ck.state.tokens_seen = -1;
  save_checkpoint(d / "neg_tokens.h5", ck);
  expect_refused(d / "neg_tokens.h5", {"'/state'", "tokens_seen", "-1"});
  ck = make_checkpoint(5, false);
  ck.params[1].data[4] = std::numeric_limits<float>::quiet_NaN();
  save_checkpoint(d / "nan.h5", ck);
  expect_refused(d / "nan.h5", {"'/params/layers.0.mixer.in_proj.weight'", "non-finite", "nan", "index 4"});
  ck = make_checkpoint(5, false);
  ck.adam_v[2].data[0] = -std::numeric_limits<float>::infinity();
  save_checkpoint(d / "inf.h5", ck);
  expect_refused(d / "inf.h5", {"'/optim/v/layers.0.norm.weight'", "non-finite", "-inf"});
}

namespace {

// Runs f in a child process whose stderr goes to a file, then lets the child leave through exit()
// (not _exit), so HDF5's atexit handler runs there: that is where an id left open by a failed
// close used to crash (H5F__close_cb) or print "infinite loop closing library". Returns
// {exit status text, child's stderr, child's stdout report}.
struct ChildResult {
  bool exited_zero = false;
  std::string status, err, report;
};
template <class F> ChildResult run_in_child(const std::string& err_path, F f) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    if (!std::freopen(err_path.c_str(), "w", stderr)) _exit(3);
    alarm(120);
    std::string report = f();
    if (write(fds[1], report.data(), report.size()) < 0) _exit(2);
    close(fds[1]);
    std::exit(0);  // atexit handlers run: HDF5 closes the library here
  }
  close(fds[1]);
  ChildResult r;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) r.report.append(buf, size_t(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  r.exited_zero = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  r.status = WIFSIGNALED(st) ? "killed by signal " + std::to_string(WTERMSIG(st)) : "exit " + std::to_string(WEXITSTATUS(st));
  r.err = read_bytes(err_path);
  return r;
}

std::string open_hdf5_ids() {
  return std::to_string(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
}

}  // namespace

// Disk full (here: a file-size limit, which fails the write the same way) in the middle of a save:
// one clear error, no .tmp left, and the process exits without a crash or HDF5 noise.
TEST(Checkpoint, DiskFullDuringSaveFailsCleanly) {
  TempDir d;
  Checkpoint big;
  big.config_yaml = "model: {}\n";
  for (int i = 0; i < 8; ++i) big.params.push_back(make_array("w" + std::to_string(i), {256, 256}, uint64_t(i)));
  const std::string path = d / "ckpt.h5";
  ChildResult r = run_in_child(d / "stderr.txt", [&] {
    struct rlimit lim{200 * 1024, 200 * 1024};
    signal(SIGXFSZ, SIG_IGN);  // the write then fails with EFBIG, as ENOSPC would, instead of killing
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return std::string("setrlimit failed");
    std::string msg = "no error";
    try {
      save_checkpoint(path, big);
    } catch (const Error& e) {
      msg = e.what();
    }
    return msg + "\nopen ids: " + open_hdf5_ids();
  });
  std::printf("  child: %s\n  report: %s\n  stderr: '%s'\n", r.status.c_str(), r.report.c_str(), r.err.c_str());
  EXPECT_TRUE(r.exited_zero) << r.status;
  EXPECT_NE(r.report.find("saving checkpoint '" + path + "'"), std::string::npos) << r.report;
  EXPECT_NE(r.report.find("File too large"), std::string::npos) << r.report;
  // Not "open ids: 0": when H5Fclose itself fails (it must flush, and the disk is full), HDF5 1.10
  // keeps a half-closed file id that no API call releases (closing it again is what crashed at exit).
  // Every id of ours is released; that one is left to the process exit, which no longer touches it.
  EXPECT_NE(r.report.find("open ids: "), std::string::npos) << r.report;
  EXPECT_EQ(r.report.find("time ="), std::string::npos) << "HDF5's raw write diagnostics leaked into the message: " << r.report;
  EXPECT_EQ(r.err, "") << "HDF5 printed at exit";
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_FALSE(fs::exists(path));
}

// Badly damaged files (random byte flips, truncations, zeroed blocks): each load fails with an
// InputError, no HDF5 id stays open, and nothing is printed when the process exits.
TEST(Checkpoint, DamagedFilesLeaveNoHdf5StateBehind) {
  TempDir d;
  std::string p = d / "c.h5";
  save_checkpoint(p, make_checkpoint(7, false));
  const std::string bytes = read_bytes(p);
  ChildResult r = run_in_child(d / "stderr.txt", [&] {
    Rng rng(5);
    std::string t = d / "bad.h5";
    int refused = 0, loaded = 0;
    for (int i = 0; i < 400; ++i) {
      std::string bad = bytes;
      switch (i % 4) {
        case 0:  // a burst of random bytes
        case 1: {
          size_t at = size_t(rng.below(bytes.size())), n = 1 + size_t(rng.below(64));
          for (size_t k = at; k < std::min(bytes.size(), at + n); ++k) bad[k] = char(rng.below(256));
          break;
        }
        case 2: bad.resize(size_t(rng.below(bytes.size()))); break;
        case 3: {
          size_t at = size_t(rng.below(bytes.size()));
          std::fill(bad.begin() + long(at), bad.begin() + long(std::min(bytes.size(), at + 512)), '\0');
          break;
        }
      }
      write_bytes(t, bad);
      try {
        load_checkpoint(t);
        ++loaded;
      } catch (const InputError&) {
        ++refused;
      }
    }
    return fmt::format("{} refused, {} loaded, open ids: {}", refused, loaded, open_hdf5_ids());
  });
  std::printf("  child: %s\n  report: %s\n  stderr: '%s'\n", r.status.c_str(), r.report.c_str(),
              r.err.substr(0, 400).c_str());
  EXPECT_TRUE(r.exited_zero) << r.status;
  EXPECT_NE(r.report.find("open ids: 0"), std::string::npos) << r.report;
  EXPECT_EQ(r.err, "") << "HDF5 printed at exit";
}
