// The synthetic data kinds (data.kind mqar, selective_copying, induction_heads): each generator's
// sequences have the documented structure, batches are a function of the seed and the stream's
// position (resume, data-parallel row slices), validation is fixed, the accuracy metric counts what it
// says, and their config keys are strict and tie the model's vocabulary to the task's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "core/error.h"
#include "input_error_testing.h"
#include "kernels/cpu/argmax.h"
#include "train/accuracy.h"
#include "train/config_load.h"
#include "train/data.h"
#include "train/dataset.h"
#include "train/synthetic_data.h"
#include "train/synthetic_induction_heads.h"
#include "train/synthetic_mqar.h"
#include "train/synthetic_selective_copying.h"
#include "train/synthetic_task.h"

namespace fs = std::filesystem;
using namespace strata;

namespace {

using strata::testing::error_of;
using strata::testing::expect_has;

struct Seq {
  std::vector<int32_t> ids, tgt;
};

Seq generate(const SyntheticTask& t, int64_t T, uint64_t seed) {
  Seq s{std::vector<int32_t>(size_t(T)), std::vector<int32_t>(size_t(T))};
  Rng r(seed);
  t.generate(s.ids.data(), s.tgt.data(), T, r);
  return s;
}

std::vector<int64_t> tested(const Seq& s) {
  std::vector<int64_t> p;
  for (size_t i = 0; i < s.tgt.size(); ++i)
    if (s.tgt[i] >= 0) p.push_back(int64_t(i));
  return p;
}

DataConfig data_of(const std::string& kind) {
  DataConfig d;
  d.kind = kind;
  return d;
}


}  // namespace

TEST(Mqar, PairsThenQueriesOfEarlierKeysWithTheirValues) {
  MqarConfig c;
  c.vocab = 64, c.pairs = 6, c.queries = 4;
  const SyntheticTask t = mqar_task(c);
  EXPECT_EQ(t.vocab, 64);
  EXPECT_EQ(t.min_seq, 2 * 6 + 2 * 4);
  for (int64_t T : {int64_t(20), int64_t(64), int64_t(301)}) {
    for (uint64_t seed = 0; seed < 200; ++seed) {
      Seq s = generate(t, T, seed);
      std::map<int32_t, int32_t> value_of;
      std::set<int32_t> values;
      for (int p = 0; p < 6; ++p) {
        const int32_t k = s.ids[size_t(2 * p)], v = s.ids[size_t(2 * p + 1)];
        ASSERT_GE(k, 1);
        ASSERT_LT(k, 32);  // keys: [1, vocab / 2)
        ASSERT_GE(v, 32);  // values: [vocab / 2, vocab)
        ASSERT_LT(v, 64);
        ASSERT_TRUE(value_of.emplace(k, v).second) << "keys are distinct";
        ASSERT_TRUE(values.insert(v).second) << "values are distinct";
        ASSERT_EQ(s.tgt[size_t(2 * p)], -1);
        ASSERT_EQ(s.tgt[size_t(2 * p + 1)], -1);
      }
      const auto pos = tested(s);
      ASSERT_EQ(pos.size(), 4u) << "one tested position per query";
      std::set<int32_t> queried;
      for (int64_t p : pos) {
        ASSERT_GE(p, 12) << "queries come after the pairs";
        ASSERT_EQ((p - 12) % 2, 0) << "at even offsets, as Zoology places them";
        ASSERT_TRUE(value_of.count(s.ids[size_t(p)])) << "the query is a key of this sequence";
        ASSERT_EQ(s.tgt[size_t(p)], value_of[s.ids[size_t(p)]]) << "its target is that key's value";
        ASSERT_TRUE(queried.insert(s.ids[size_t(p)]).second) << "each key is queried at most once";
      }
      for (int32_t id : s.ids) ASSERT_TRUE(id >= 0 && id < 64);
    }
  }
  // queries = 0 means every key, as Zoology.
  c.queries = 0;
  EXPECT_EQ(tested(generate(mqar_task(c), 64, 1)).size(), 6u);
}

TEST(Mqar, QueryGapsFollowThePowerLaw) {
  // One draw: P(gap = g) ~ (g + 1)^(a - 1). With a = 0.01, gap 0 is ~10^0.99 times as likely as gap 9;
  // with a = 1 every gap is equally likely.
  for (double a : {0.01, 0.5, 1.0}) {
    std::vector<int64_t> count(40, 0), gaps;
    Rng r(5);
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
      power_law_gaps(gaps, 40, 1, a, r);
      ++count[size_t(gaps[0])];
    }
    double z = 0;
    for (int g = 0; g < 40; ++g) z += std::pow(g + 1.0, a - 1.0);
    for (int g : {0, 1, 9, 39}) {
      const double want = std::pow(g + 1.0, a - 1.0) / z, got = double(count[size_t(g)]) / n;
      std::printf("  a=%.2f gap %2d: %.4f (expected %.4f)\n", a, g, got, want);
      EXPECT_NEAR(got, want, 5 * std::sqrt(want / n) + 1e-4);
    }
  }
  // Without replacement: k distinct gaps, all of them when k = space.
  std::vector<int64_t> gaps;
  Rng r(9);
  power_law_gaps(gaps, 12, 12, 0.01, r);
  std::sort(gaps.begin(), gaps.end());
  for (int g = 0; g < 12; ++g) EXPECT_EQ(gaps[size_t(g)], g);
  // In whole sequences, short distances dominate: most queries sit in the first quarter of the region.
  MqarConfig c;
  c.vocab = 256, c.pairs = 4;
  const SyntheticTask t = mqar_task(c);
  int64_t near = 0, all = 0;
  for (uint64_t seed = 0; seed < 500; ++seed)
    for (int64_t p : tested(generate(t, 256, seed))) near += (p - 8) / 2 < (256 - 8) / 2 / 4, ++all;
  std::printf("  %lld of %lld queries in the first quarter of the query region\n", (long long)near, (long long)all);
  EXPECT_GT(double(near) / double(all), 0.5);
}

TEST(SelectiveCopying, TargetsAreTheDataTokensInOrderAtTheMarkers) {
  SelectiveCopyingConfig c;
  c.vocab = 10, c.tokens = 5, c.noise_token = 3;
  const SyntheticTask t = selective_copying_task(c);
  EXPECT_TRUE(t.sequence_metric);
  EXPECT_EQ(t.min_seq, 10);
  for (int64_t T : {int64_t(10), int64_t(40), int64_t(257)}) {
    for (uint64_t seed = 0; seed < 200; ++seed) {
      Seq s = generate(t, T, seed);
      const int64_t M = T - 5;
      std::vector<int32_t> data;
      for (int64_t i = 0; i < M; ++i) {
        ASSERT_EQ(s.tgt[size_t(i)], -1) << "no target before the copy region";
        ASSERT_NE(s.ids[size_t(i)], 9) << "the marker appears only in the copy region";
        if (s.ids[size_t(i)] != 3) data.push_back(s.ids[size_t(i)]);
      }
      ASSERT_EQ(data.size(), 5u) << "exactly `tokens` data tokens among the noise";
      for (int64_t i = 0; i < 5; ++i) {
        ASSERT_EQ(s.ids[size_t(M + i)], 9) << "copy markers (vocab - 1) at the end";
        ASSERT_EQ(s.tgt[size_t(M + i)], data[size_t(i)]) << "the i-th marker's target is the i-th data token";
      }
    }
  }
  // The data tokens' positions vary: that is what makes the copying selective.
  std::set<int64_t> first;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Seq s = generate(t, 100, seed);
    first.insert(std::find_if(s.ids.begin(), s.ids.end(), [](int32_t x) { return x != 3; }) - s.ids.begin());
  }
  EXPECT_GT(first.size(), 10u);
}

TEST(InductionHeads, TargetAfterTheSecondTriggerIsTheTokenAfterTheFirst) {
  for (int trigger : {-1, 0, 7}) {
    InductionHeadsConfig c;
    c.vocab = 16, c.trigger = trigger;
    const SyntheticTask t = induction_heads_task(c);
    const int32_t trig = trigger < 0 ? 15 : trigger;
    std::set<int64_t> firsts;
    for (int64_t T : {int64_t(3), int64_t(16), int64_t(256)}) {
      for (uint64_t seed = 0; seed < 300; ++seed) {
        Seq s = generate(t, T, seed);
        std::vector<int64_t> at;
        for (int64_t i = 0; i < T; ++i)
          if (s.ids[size_t(i)] == trig) at.push_back(i);
        ASSERT_EQ(at.size(), 2u) << "the trigger occurs exactly twice";
        ASSERT_EQ(at[1], T - 1) << "the second time at the end";
        ASSERT_LE(at[0], T - 3);
        ASSERT_EQ(tested(s), std::vector<int64_t>{T - 1}) << "the only tested position";
        ASSERT_EQ(s.tgt[size_t(T - 1)], s.ids[size_t(at[0] + 1)]) << "recall the token after the first trigger";
        if (T == 256) firsts.insert(at[0]);
      }
    }
    EXPECT_GT(firsts.size(), 100u) << "the first trigger's position is random";
  }
}

TEST(SyntheticData, BatchesFollowTheSeedAndResumeFromTheCounter) {
  for (const char* kind : {"mqar", "selective_copying", "induction_heads"}) {
    SCOPED_TRACE(kind);
    DataConfig d = data_of(kind);
    d.mqar.vocab = 128;
    SyntheticData data(synthetic_task(d));
    const int64_t B = 4, T = 64;
    std::vector<int32_t> a(B * T), at(B * T), b(B * T), bt(B * T);
    Rng r1(42), r2(42), r3(43);
    data.train_batch(a.data(), at.data(), B, T, r1);
    data.train_batch(b.data(), bt.data(), B, T, r2);
    EXPECT_EQ(a, b);
    EXPECT_EQ(at, bt);
    data.train_batch(b.data(), bt.data(), B, T, r3);
    EXPECT_NE(a, b) << "another seed, other sequences";
    // The stream position is (seed, counter): a resumed stream gives the next batch bit for bit.
    Rng saved(r1.seed, r1.counter);
    data.train_batch(a.data(), at.data(), B, T, r1);
    data.train_batch(b.data(), bt.data(), B, T, saved);
    EXPECT_EQ(a, b);
    EXPECT_EQ(at, bt);
    EXPECT_EQ(r1.counter, saved.counter);
    EXPECT_EQ(r1.counter, uint64_t(2 * 2 * B)) << "two words per row, whatever the task draws for it";
  }
}

TEST(SyntheticData, DataParallelRowSlicesAreTheGlobalBatch) {
  DataConfig d = data_of("mqar");
  d.mqar.vocab = 128;
  SyntheticData data(synthetic_task(d));
  const int64_t B = 6, T = 48;
  std::vector<int32_t> all(B * T), allt(B * T);
  Rng g(7);
  data.train_batch(all.data(), allt.data(), B, T, g);
  for (int W : {2, 3}) {
    const int64_t rows = B / W;
    for (int rank = 0; rank < W; ++rank) {
      std::vector<int32_t> ids(rows * T), tgt(rows * T);
      Rng r(7);
      data.train_batch_rows(ids.data(), tgt.data(), B, T, r, rank * rows, rows);
      EXPECT_EQ(r.counter, g.counter) << "every rank's stream advances by the whole batch";
      EXPECT_TRUE(std::equal(ids.begin(), ids.end(), all.begin() + rank * rows * T));
      EXPECT_TRUE(std::equal(tgt.begin(), tgt.end(), allt.begin() + rank * rows * T));
    }
  }
}

TEST(SyntheticData, ValidationIsFixedAndApartFromTraining) {
  DataConfig d = data_of("selective_copying");
  SyntheticData data(synthetic_task(d));
  const int64_t B = 3, T = 64;
  std::vector<int32_t> a(B * T), at(B * T), b(B * T), bt(B * T);
  data.val_batch(a.data(), at.data(), B, T, 2, 4);
  data.val_batch(b.data(), bt.data(), B, T, 2, 4);
  EXPECT_EQ(a, b);
  EXPECT_EQ(at, bt);
  data.val_rows(b.data(), bt.data(), 2 * B, B, T);  // val_batch(i) is rows [i * B, (i + 1) * B)
  EXPECT_EQ(a, b);
  data.val_batch(b.data(), bt.data(), B, T, 1, 4);
  EXPECT_NE(a, b);
  for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(7)}) {  // not a training batch of a usual seed
    Rng r(seed);
    data.train_batch(b.data(), bt.data(), B, T, r);
    EXPECT_NE(a, b);
  }
  EXPECT_THROW(data.val_batch(a.data(), at.data(), B, 31, 0, 1), InputError) << "shorter than 2 * tokens";
}

TEST(Dataset, TextKindIsTheTextDataUnchanged) {
  fs::path dir = fs::temp_directory_path() / ("strata_test_synth_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::string text;
  for (int i = 0; i < 3000; ++i) text += char('a' + (i * 7 + i / 13) % 26);
  std::ofstream(dir / "d.txt") << text;
  Config cfg;
  cfg.data.path = (dir / "d.txt").string();
  auto ds = make_dataset(cfg);
  TextData direct(cfg.data.path, cfg.data.val_fraction);
  EXPECT_FALSE(ds->has_accuracy());
  const int64_t B = 5, T = 32;
  std::vector<int32_t> a(B * T), at(B * T), b(B * T), bt(B * T);
  Rng r1(3), r2(3);
  for (int step = 0; step < 3; ++step) {
    ds->train_batch(a.data(), at.data(), B, T, r1);
    direct.train_batch(b.data(), bt.data(), B, T, r2);
    EXPECT_EQ(a, b);
    EXPECT_EQ(at, bt);
  }
  EXPECT_EQ(r1.counter, r2.counter);
  fs::remove_all(dir);
}

TEST(Accuracy, CountsTheTestedPositionsOfAHandMadeBatch) {
  // B = 2 sequences of T = 3 positions, V = 4. Tested: (0,1) target 2, (0,2) target 0, (1,2) target 3.
  const float logits[2 * 3 * 4] = {
      9, 0, 0, 0,    // (0,0) untested
      0, 1, 5, 2,    // (0,1) argmax 2: right
      1, 3, 3, 0,    // (0,2) tie of 1 and 2 -> the first, 1: wrong (target 0)
      0, 0, 0, 0,    // (1,0) untested (ties: 0)
      0, 7, 0, 0,    // (1,1) untested
      -1, -2, -3, -0.5f,  // (1,2) argmax 3: right
  };
  const int32_t targets[6] = {-1, 2, 0, -1, -1, 3};
  int32_t pred[6];
  cpu::argmax_rows(pred, logits, 6, 4);
  EXPECT_EQ(std::vector<int32_t>(pred, pred + 6), (std::vector<int32_t>{0, 2, 1, 0, 1, 3}));
  Accuracy a = accuracy_of(pred, targets, 2, 3);
  EXPECT_EQ(a.tested, 3);
  EXPECT_EQ(a.correct, 2);
  EXPECT_DOUBLE_EQ(a.token(), 2.0 / 3.0);
  EXPECT_EQ(a.sequences, 2);
  EXPECT_EQ(a.all_correct, 1) << "sequence 0 has a wrong position, sequence 1 is all right";
  EXPECT_DOUBLE_EQ(a.sequence(), 0.5);
  // A sequence without tested positions counts for neither.
  const int32_t none[6] = {-1, -1, -1, -1, -1, 3};
  a = accuracy_of(pred, none, 2, 3);
  EXPECT_EQ(a.sequences, 1);
  EXPECT_EQ(a.all_correct, 1);
  a.add(accuracy_of(pred, targets, 2, 3));
  EXPECT_EQ(a.tested, 4);
  EXPECT_EQ(a.correct, 3);
}

// --- config -----------------------------------------------------------------------------------

TEST(SyntheticConfig, KeysLandAndTheModelVocabularyFollowsTheTask) {
  Config c = parse_config("data:\n  kind: mqar\n  eval_seqs: \"128 512\"\n  mqar: {vocab: 300, pairs: 16, queries: 4, power_a: 0.5}\n"
                          "train: {seq: 64}\n", "cfg.yaml");
  EXPECT_EQ(c.data.mqar.vocab, 300);
  EXPECT_EQ(c.data.mqar.pairs, 16);
  EXPECT_EQ(c.data.mqar.queries, 4);
  EXPECT_FLOAT_EQ(c.data.mqar.power_a, 0.5f);
  EXPECT_EQ(parse_eval_seqs(c.data.eval_seqs), (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(c.model.vocab, "ids") << "derived from the task when the config leaves it out";
  EXPECT_EQ(c.model.vocab_size, 300);
  // Round trip, and the dump shows only the kind in use.
  const std::string y = to_yaml(c);
  EXPECT_NE(y.find("mqar:"), std::string::npos);
  EXPECT_EQ(y.find("selective_copying:"), std::string::npos);
  EXPECT_TRUE(config_diff(parse_config(y, "rt.yaml"), c).empty());
  // A text config's dump has none of the new keys.
  const std::string text = to_yaml(parse_config("", "e.yaml"));
  for (const char* k : {"eval_seqs", "mqar", "selective_copying", "induction_heads"}) EXPECT_EQ(text.find(k), std::string::npos) << k;
  // An explicit model vocabulary that covers the task is kept.
  c = parse_config("data: {kind: selective_copying}\ntrain: {seq: 64}\n", "cfg.yaml", {"+model.vocab=bytes"});
  EXPECT_EQ(c.model.vocab_size, 256);
  c = parse_config("data: {kind: induction_heads, induction_heads: {vocab: 20}}\nmodel: {vocab: ids, vocab_size: 32}\n", "cfg.yaml");
  EXPECT_EQ(c.model.vocab_size, 32);
}

TEST(SyntheticConfig, ErrorsNameTheKeyFileAndLine) {
  std::string y = "data:\n  kind: mqar\n  mqar:\n    pairz: 4\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }),
             {"cfg.yaml:4:", "unknown key 'data.mqar.pairz'", "did you mean 'pairs'"});
  y = "data:\n  kind: mqa\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }),
             {"cfg.yaml:2:", "'data.kind' must be one of: text, mqar, selective_copying, induction_heads", "did you mean 'mqar'"});
  // The model's vocabulary must cover the task's ids.
  y = "model:\n  vocab: ids\n  vocab_size: 100\ndata:\n  kind: mqar\n  mqar: {vocab: 128}\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }),
             {"cfg.yaml:3:", "model.vocab_size=100", "does not cover", "data.mqar.vocab=128", "model.vocab_size: 128"});
  expect_has(error_of([&] { parse_config("data: {kind: mqar}\n", "cfg.yaml", {"+model.vocab=bytes"}); }),
             {"model.vocab='bytes'", "data.mqar.vocab=8192"});
  // Sequence lengths that cannot hold the task.
  y = "train: {seq: 30}\ndata:\n  kind: mqar\n  mqar: {vocab: 64, pairs: 8}\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:1:", "train.seq=30", "at least 2 * data.mqar.pairs"});
  y = "train: {seq: 64}\ndata:\n  kind: selective_copying\n  eval_seqs: \"128 20\"\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:4:", "data.eval_seqs='128 20' has 20", "2 * data.selective_copying.tokens"});
  y = "data:\n  kind: induction_heads\n  eval_seqs: \"128 1k\"\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:3:", "'1k' is not a positive sequence length"});
  y = "data:\n  kind: text\n  eval_seqs: \"128\"\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:3:", "data.eval_seqs", "synthetic"});
  // Key ranges.
  y = "data:\n  kind: mqar\n  mqar:\n    vocab: 16\n    pairs: 8\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:4:", "data.mqar.vocab=16", "fewer than data.mqar.pairs=8"});
  y = "data:\n  kind: mqar\n  mqar:\n    queries: 9\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:4:", "'data.mqar.queries' must be in [0, 8]"});
  y = "data:\n  kind: selective_copying\n  selective_copying:\n    noise_token: 15\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:4:", "noise_token", "copy marker"});
  y = "data:\n  kind: induction_heads\n  induction_heads:\n    trigger: 16\n";
  expect_has(error_of([&] { parse_config(y, "cfg.yaml"); }), {"cfg.yaml:4:", "data.induction_heads.trigger", "-1 = vocab - 1"});
  // A text run ignores the synthetic keys (their defaults are always valid).
  EXPECT_NO_THROW(parse_config("", "e.yaml", {"+data.mqar.pairs=1000"}));
}
