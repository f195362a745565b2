// safetensors: fp16/bf16 conversions against an exact double-precision reference; our writer and
// reader round-trip bit for bit (single files and sharded directories); files written by the Python
// `safetensors` package read back right and ours load in Python unchanged; malformed files are
// refused with an InputError that says why; the fuzz seed corpus replays through the fuzz entry point.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "../fuzz/fuzz_safetensors_header.cpp"  // LLVMFuzzerTestOneInput, replayed on the seed corpus
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "interop/safetensors.h"
#include "python_oracle.h"
#include "temp_dir.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;

namespace {

struct TempDir : st::TempDir {
  TempDir() : st::TempDir("strata_st_") {}
};

using strata::testing::read_bytes;
void write_bytes(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::string hex(std::span<const uint8_t> b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t c : b) s += d[c >> 4], s += d[c & 15];
  return s;
}
template <class T> std::span<const uint8_t> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

// Bit-exact equality of float vectors (NaN == NaN, -0 != +0).
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (bits(got[i]) != bits(want[i]) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << " (0x" << std::hex << bits(got[i]) << ") want " << want[i]
                    << " (0x" << bits(want[i]) << ")";
  EXPECT_EQ(bad, 0u) << what;
}

// ---- exact reference for float -> binary16, by search over the half values ----

double half_value(uint16_t h) {  // h in [0, 0x7bff]: exact in double
  int e = h >> 10, m = h & 0x3ff;
  return e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), e - 25);
}
uint16_t ref_f32_to_f16(float x) {
  uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  double a = std::fabs(double(x));
  if (std::isinf(a)) return sign | 0x7c00;
  // Largest h with value(h) <= a; positive halves are ordered like their bit patterns.
  uint16_t lo = 0, hi = 0x7bff;
  while (lo < hi) {
    uint16_t mid = uint16_t((lo + hi + 1) / 2);
    if (half_value(mid) <= a) lo = mid;
    else hi = uint16_t(mid - 1);
  }
  double below = a - half_value(lo), above = (lo == 0x7bff ? 65536.0 : half_value(uint16_t(lo + 1))) - a;
  uint16_t r = below < above ? lo : above < below ? uint16_t(lo + 1) : (lo & 1 ? uint16_t(lo + 1) : lo);
  return sign | r;  // lo + 1 == 0x7c00 is inf: IEEE rounds past 65520 to infinity
}

std::vector<float> edge_values() {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  return {0.0f, -0.0f, 1.0f, -2.5f, 3.14159265f, 1e-40f, -3.4e38f, 65504.0f, 65519.0f, 65520.0f, 1e5f,
          0x1p-14f, 0x1p-24f, 0x1p-25f, 0x1.8p-24f, 0x1.8p-25f, 1.0f + 0x1p-11f, 1.0f + 0x1p-8f, 1.0f + 0x3p-8f,
          inf, -inf, nan, -nan};
}

// A header + data buffer as a file image, the header padded like the Python writer pads it.
std::string st_image(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Opening `path` must throw an InputError naming the file and containing `reason`.
void expect_refused(const std::string& path, const std::string& reason) {
  try {
    SafetensorsFile f(path);
    ADD_FAILURE() << "accepted " << path << " (expected: " << reason << ")";
  } catch (const InputError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(reason), std::string::npos) << "message: " << m << "\nexpected: " << reason;
    EXPECT_NE(m.find(path), std::string::npos) << "message does not name the file: " << m;
  }
}

template <class F> void expect_input_error(F&& f, const std::string& reason) {
  try {
    f();
    ADD_FAILURE() << "no error (expected: " << reason << ")";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << "message: " << e.what() << "\nexpected: " << reason;
  }
}

}  // namespace

// ---- conversions ----

TEST(Float16, EveryHalfDecodesExactlyAndRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (nan) {
      ASSERT_TRUE(std::isnan(f)) << h;
      ASSERT_EQ(f32_to_f16(f), h | 0x200) << h;  // stays NaN (quieted), sign and payload kept
      continue;
    }
    double want = (h & 0x7fff) == 0x7c00 ? INFINITY : half_value(uint16_t(h & 0x7fff));
    ASSERT_EQ(double(f), (h & 0x8000) ? -want : want) << h;
    ASSERT_EQ(std::signbit(f), bool(h & 0x8000)) << h;
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
}

TEST(Float16, RoundsToNearestEvenLikeAnExactReference) {
  size_t n = 0, bad = 0;
  auto check = [&](uint32_t u) {
    float x = from_bits(u);
    if (std::isnan(x)) return;
    ++n;
    uint16_t got = f32_to_f16(x), want = ref_f32_to_f16(x);
    if (got != want && bad++ < 5) ADD_FAILURE() << "x=" << x << " (0x" << std::hex << u << "): got 0x" << got << " want 0x" << want;
  };
  for (uint64_t u = 0; u < (1ull << 32); u += 8191) check(uint32_t(u));  // a stride through every float
  // Around each half's rounding point: the 13 dropped mantissa bits just below, at and above a tie.
  for (uint32_t e = 0; e < 256; ++e)
    for (uint32_t top = 0; top < 1024; ++top)
      for (uint32_t low : {0x0u, 0xfffu, 0x1000u, 0x1001u}) check(e << 23 | top << 13 | low | (top & 1) << 31);
  // The subnormal range, where more bits are dropped, densely at random.
  Rng r(7);
  for (int i = 0; i < 400000; ++i) check((100u + r.next_u32() % 14) << 23 | (r.next_u32() & 0x7fffff));
  for (float x : edge_values()) check(bits(x));
  std::printf("  checked %zu floats against the reference, %zu mismatches\n", n, bad);
  EXPECT_EQ(bad, 0u);
}

TEST(BFloat16, EveryNonNanValueRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
    else ASSERT_EQ(f32_to_bf16(f), h);
  }
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);  // tie: to even
  EXPECT_EQ(f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);
}

// ---- our writer and reader ----

TEST(Safetensors, RoundTripIsBitExactForRepresentableValues) {
  TempDir d;
  std::vector<float> f32 = edge_values();
  for (int k = 0; k < 9; ++k) f32.push_back(float(k) * 0.37f);  // 32 values
  std::vector<float> halves;  // exactly representable in both f16 and bf16
  for (int k = -60; k < 60; ++k) halves.push_back(float(k) / 8.0f);
  for (float v : {0x1p-14f, -0x1p-14f, 0x1p-8f, 32768.0f, -0.0f, INFINITY, -INFINITY}) halves.push_back(v);
  std::vector<float> f16 = halves, bf16 = halves;
  for (float v : {65504.0f, 0x1p-24f, 0x1.ff8p-15f}) f16.push_back(v);              // f16 subnormals, max
  for (uint16_t h : {0x7f7fu, 0x0001u, 0x8080u}) bf16.push_back(bf16_to_f32(h));  // bf16 max, subnormals
  const float scalar = 2.5f;
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "ünïcode ✓"}, {"empty", ""}};
  const std::string p = d / "t.safetensors";
  write_safetensors(p,
                    {{"w.f32", StDtype::F32, {4, 8}, f32.data()},
                     {"h", StDtype::F16, {int64_t(f16.size())}, f16.data()},
                     {"b", StDtype::BF16, {1, int64_t(bf16.size())}, bf16.data()},
                     {"scalar", StDtype::F32, {}, &scalar},
                     {"empty", StDtype::F16, {0, 4}, nullptr}},
                    meta);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  uint64_t header_len;
  std::memcpy(&header_len, read_bytes(p).data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "header padded to 8 bytes";

  SafetensorsFile f(p);
  EXPECT_EQ(f.path(), p);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), 5u);
  const char* order[] = {"w.f32", "h", "b", "scalar", "empty"};  // data order = the order given
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(f.tensors()[i].name, order[i]);
  EXPECT_EQ(f.find("b")->dtype, StDtype::BF16);
  EXPECT_EQ(f.find("b")->shape, (std::vector<int64_t>{1, int64_t(bf16.size())}));
  EXPECT_EQ(f.find("scalar")->shape, std::vector<int64_t>{});
  EXPECT_EQ(f.find("nope"), nullptr);
  expect_same_bits(f.read_f32("w.f32"), f32, "f32");
  expect_same_bits(f.read_f32("h"), f16, "f16");
  expect_same_bits(f.read_f32("b"), bf16, "bf16");
  expect_same_bits(f.read_f32("scalar"), {scalar}, "scalar");
  EXPECT_TRUE(f.read_f32("empty").empty());
  EXPECT_TRUE(f.raw("empty").empty());
  ASSERT_EQ(f.raw("h").size(), 2 * f16.size());
  for (size_t i = 0; i < f16.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, f.raw("h").data() + 2 * i, 2);
    EXPECT_EQ(h, f32_to_f16(f16[i]));
  }
  expect_input_error([&] { f.read_f32("nope"); }, "no tensor 'nope'");
  expect_input_error([&] { f.raw("nope"); }, "no tensor 'nope'");

  SafetensorsCheckpoint one(p);  // a single file works as a checkpoint too
  EXPECT_EQ(one.names(), (std::vector<std::string>{"b", "empty", "h", "scalar", "w.f32"}));
  expect_same_bits(one.read_f32("h"), f16, "checkpoint f16");
}

TEST(Safetensors, HalfPrecisionWritesRoundToNearestEven) {
  TempDir d;
  // More than one conversion chunk (65536 elements), values of every magnitude.
  std::vector<float> x = st::randn(150001, 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::ldexp(x[i], int(i % 60) - 40);
  write_safetensors(d / "h.safetensors",
                    {{"h", StDtype::F16, {int64_t(x.size())}, x.data()}, {"b", StDtype::BF16, {int64_t(x.size())}, x.data()}});
  SafetensorsFile f(d / "h.safetensors");
  std::vector<float> want_h(x.size()), want_b(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    want_h[i] = f16_to_f32(ref_f32_to_f16(x[i]));
    want_b[i] = bf16_to_f32(f32_to_bf16(x[i]));
  }
  expect_same_bits(f.read_f32("h"), want_h, "f16");
  expect_same_bits(f.read_f32("b"), want_b, "bf16");
}

TEST(Safetensors, WriterRefusesWhatItCannotWrite) {
  TempDir d;
  float v = 1;
  expect_input_error([&] { write_safetensors(d / "a", {{"i", StDtype::I64, {1}, &v}}); }, "dtype I64");
  expect_input_error([&] { write_safetensors(d / "a", {{"a", StDtype::F32, {1}, &v}, {"a", StDtype::F32, {1}, &v}}); },
                     "twice");
  expect_input_error([&] { write_safetensors(d / "a", {{"__metadata__", StDtype::F32, {1}, &v}}); }, "invalid name");
  expect_input_error([&] { write_safetensors(d / "a", {{"a", StDtype::F32, {-1}, &v}}); }, "negative");
  expect_input_error([&] { write_safetensors(d / "a", {{"a", StDtype::F32, {3}, nullptr}}); }, "no data");
  expect_input_error([&] { write_safetensors(d / "a", {{"\xff", StDtype::F32, {1}, &v}}); }, "UTF-8");
  EXPECT_TRUE(fs::is_empty(d.path)) << "nothing left behind";
}

TEST(Safetensors, ShardedDirectoryWithIndex) {
  TempDir d;
  std::vector<float> a = st::randn(100, 1), b = st::randn(100, 2), c = st::randn(200, 3), e = st::randn(500, 5);
  std::vector<float> h(50, 0.5f);
  // 400 + 400 | 800 + 100 | 2000 bytes with a 1000-byte limit: three shards, "e" alone.
  std::vector<StTensorOut> ts = {{"layers.0.a", StDtype::F32, {10, 10}, a.data()},
                                 {"layers.0.b", StDtype::F32, {100}, b.data()},
                                 {"layers.1.c", StDtype::F32, {2, 100}, c.data()},
                                 {"layers.1.h", StDtype::F16, {50}, h.data()},
                                 {"embed", StDtype::F32, {500}, e.data()}};
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  write_safetensors(d / "model.safetensors", ts, meta);  // stale single file: must not shadow the shards
  write_safetensors_dir(d.path.string(), ts, meta, 1000);
  EXPECT_FALSE(fs::exists(d / "model.safetensors"));
  for (auto* s : {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"})
    EXPECT_TRUE(fs::exists(d / s)) << s;
  auto idx = nlohmann::json::parse(read_bytes(d / "model.safetensors.index.json"));
  EXPECT_EQ(idx["metadata"]["total_size"], 3700);
  EXPECT_EQ(idx["metadata"]["total_parameters"], 950);
  EXPECT_EQ(idx["weight_map"]["layers.0.b"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["layers.1.h"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["embed"], "model-00003-of-00003.safetensors");

  for (const std::string& where : {d.path.string(), d / "model.safetensors.index.json"}) {
    SafetensorsCheckpoint ck(where);
    EXPECT_EQ(ck.names(), (std::vector<std::string>{"embed", "layers.0.a", "layers.0.b", "layers.1.c", "layers.1.h"}));
    EXPECT_EQ(ck.files().size(), 3u);
    EXPECT_TRUE(ck.contains("layers.1.c"));
    EXPECT_FALSE(ck.contains("layers.2.c"));
    EXPECT_EQ(ck.info("layers.1.c").shape, (std::vector<int64_t>{2, 100}));
    EXPECT_EQ(ck.info("layers.1.h").dtype, StDtype::F16);
    EXPECT_EQ(ck.file_of("embed").metadata(), meta);
    expect_same_bits(ck.read_f32("layers.0.a"), a, "a");
    expect_same_bits(ck.read_f32("layers.1.c"), c, "c");
    expect_same_bits(ck.read_f32("embed"), e, "e");
    expect_same_bits(ck.read_f32("layers.1.h"), h, "h");
    expect_input_error([&] { ck.info("layers.2.c"); }, "no tensor 'layers.2.c'");
    expect_input_error([&] { ck.read_f32("layers.2.c"); }, "no tensor 'layers.2.c'");
  }

  // Everything fits in one shard: model.safetensors, and the stale index goes.
  write_safetensors_dir(d.path.string(), ts, meta, 1 << 20);
  EXPECT_TRUE(fs::exists(d / "model.safetensors"));
  EXPECT_FALSE(fs::exists(d / "model.safetensors.index.json"));
  SafetensorsCheckpoint single(d.path.string());
  EXPECT_EQ(single.files().size(), 1u);
  expect_same_bits(single.read_f32("embed"), e, "single e");
}

TEST(Safetensors, BrokenIndexesAreRefused) {
  TempDir d;
  std::vector<float> v(4, 1.0f);
  write_safetensors(d / "s1.safetensors", {{"a", StDtype::F32, {4}, v.data()}});
  write_safetensors(d / "s2.safetensors", {{"a", StDtype::F32, {4}, v.data()}, {"b", StDtype::F32, {4}, v.data()}});
  const std::string idx = d / "model.safetensors.index.json";
  auto with_map = [&](const std::string& weight_map) { write_bytes(idx, R"({"metadata": {}, "weight_map": )" + weight_map + "}"); };

  expect_input_error([&] { SafetensorsCheckpoint ck(d.path.string()); }, "no model.safetensors");
  with_map(R"({"a": "s1.safetensors", "b": "missing.safetensors"})");
  expect_input_error([&] { SafetensorsCheckpoint ck(d.path.string()); }, "missing.safetensors' (holding 'b') does not exist");
  with_map(R"({"b": "s1.safetensors"})");
  expect_input_error([&] { SafetensorsCheckpoint ck(d.path.string()); }, "maps 'b' to shard");
  with_map(R"({"a": "s1.safetensors", "b": "s2.safetensors"})");
  expect_input_error([&] { SafetensorsCheckpoint ck(d.path.string()); }, "tensor 'a' is in both");
  with_map(R"({"a": "../s1.safetensors"})");
  expect_input_error([&] { SafetensorsCheckpoint ck(d.path.string()); }, "inside the directory");
  with_map(R"({"a": 3})");
  expect_input_error([&] { SafetensorsCheckpoint ck(d.path.string()); }, "is not a string");
  write_bytes(idx, "{\"weight_map\": ");
  expect_input_error([&] { SafetensorsCheckpoint ck(d.path.string()); }, "not valid JSON");
  with_map(R"({"b": "s2.safetensors"})");  // the index decides which shards; s1 is not read
  EXPECT_EQ(SafetensorsCheckpoint(d.path.string()).names(), (std::vector<std::string>{"a", "b"}));
}

// ---- malformed files ----

TEST(Safetensors, MalformedFilesAreRefusedWithAReason) {
  TempDir d;
  const std::string w16 = R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  const std::string data16(16, '\x01');
  struct Case {
    const char* name;
    std::string bytes;
    const char* reason;
  };
  std::string n_beyond(8, '\0');
  n_beyond[0] = 100;
  std::string n_absurd(8, '\0');
  n_absurd[5] = 1;  // 2^40
  std::string valid = st_image("{" + w16 + "}", data16);
  const Case cases[] = {
      {"empty", "", "too short"},
      {"seven_bytes", std::string(7, '\0'), "too short"},
      {"header_beyond_file", n_beyond + "{}", "beyond the end of the 10-byte file"},
      {"absurd_header", n_absurd + "{}", "absurd"},
      {"truncated_data", valid.substr(0, valid.size() - 3), "out of range"},
      {"truncated_header", valid.substr(0, 20), "beyond the end"},
      {"not_json", st_image("{\"w\": [", ""), "not valid JSON"},
      {"not_object", st_image("[1, 2]", ""), "not an object"},
      {"entry_not_object", st_image(R"({"w": 3})", ""), "not an object"},
      {"unknown_dtype", st_image(R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", "abcd"), "unknown dtype 'F8_E4M3'"},
      {"wrong_size", st_image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", std::string(12, 'x')), "needs 16"},
      {"out_of_range", st_image("{" + w16 + "}", std::string(8, 'x')), "out of range"},
      {"end_before_begin", st_image(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", "abcd"), "end before begin"},
      {"overlap", st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, 'x')), "overlap"},
      {"gap", st_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", std::string(12, 'x')), "gap"},
      {"trailing_bytes", st_image("{" + w16 + "}", data16 + "xx"), "trailing bytes"},
      {"duplicate_name", st_image("{" + w16 + "," + w16 + "}", data16), "key 'w' twice"},
      {"negative_dim", st_image(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", ""), "non-negative integers"},
      {"float_dim", st_image(R"({"w":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", "x"), "non-negative integers"},
      {"overflowing_shape", st_image(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})", "xxxx"), "overflows"},
      {"bad_offsets", st_image(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"), "data_offsets must be"},
      {"missing_dtype", st_image(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", "x"), "missing \"dtype\""},
      {"metadata_not_string", st_image(R"({"__metadata__":{"n":3}})", ""), "value of 'n' is a JSON number"},
      {"metadata_not_object", st_image(R"({"__metadata__":[]})", ""), "__metadata__ is a JSON array"},
      {"invalid_utf8", st_image("{\"w\xff\":{}}", ""), "not valid JSON"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = d / (std::string(c.name) + ".safetensors");
    write_bytes(p, c.bytes);
    expect_refused(p, c.reason);
  }
  expect_refused(d / "does_not_exist.safetensors", "cannot open");
  expect_refused(d.path.string(), "not a regular file");

  // Valid, but not floating point: read_f32 refuses, raw gives the bytes.
  std::string ids(16, '\0');
  ids[0] = 7;
  ids[8] = 9;
  write_bytes(d / "ids.safetensors", st_image(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", ids));
  SafetensorsFile f(d / "ids.safetensors");
  expect_input_error([&] { f.read_f32("ids"); }, "tensor 'ids' is I64");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.raw("ids").data()), 16), ids);
}

TEST(SafetensorsFuzzCorpus, SeedsReplayThroughTheFuzzEntryPoint) {
  const fs::path dir = fs::path(st::source_dir()) / "fuzz/corpus/safetensors_header";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  size_t valid = 0, invalid = 0;
  for (auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string(), bytes = read_bytes(e.path().string());
    SCOPED_TRACE(name);
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    EXPECT_EQ(LLVMFuzzerTestOneInput(data, bytes.size()), 0);
    // The seeds are named for what the parser must do with them.
    if (name.starts_with("valid_")) {
      EXPECT_NO_THROW(parse_safetensors_header(data, bytes.size(), bytes.size(), name));
      ++valid;
    } else if (name.starts_with("invalid_")) {
      EXPECT_THROW(parse_safetensors_header(data, bytes.size(), bytes.size(), name), InputError);
      ++invalid;
    }
  }
  std::printf("  replayed %zu valid and %zu invalid seeds\n", valid, invalid);
  EXPECT_GE(valid, 4u);
  EXPECT_GE(invalid, 15u);
}

// ---- the Python safetensors package as the oracle ----

namespace {

// Runs tests/safetensors_oracle.py (its stderr goes to the test's); sets *why (and returns false)
// when no venv can be had.
bool oracle(const std::string& args, std::string* out, std::string* why) {
  std::string py = st::test_python(why);
  if (py.empty()) return false;
  int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/tests/safetensors_oracle.py") + " " + args,
                           out);
  EXPECT_EQ(rc, 0) << *out;
  return true;
}

}  // namespace

TEST(SafetensorsPython, FilesWrittenByPythonReadBack) {
  TempDir d;
  std::string out, why;
  if (!oracle("write " + st::shell_quote(d.path.string()), &out, &why)) GTEST_SKIP() << why;

  SafetensorsFile np(d / "np.safetensors"), pt(d / "pt.safetensors");
  EXPECT_EQ(np.metadata(), (std::map<std::string, std::string>{{"source", "numpy"}, {"n", "1024"}}));
  EXPECT_EQ(pt.metadata().at("source"), "torch");
  EXPECT_EQ(np.find("x")->shape, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(pt.find("x_bf16")->shape, (std::vector<int64_t>{4, 256}));
  const std::vector<float> x = np.read_f32("x");
  ASSERT_EQ(x.size(), 1024u);
  expect_same_bits(pt.read_f32("x"), x, "torch x");
  expect_same_bits(np.read_f32("x_f64"), x, "F64 -> float");

  // numpy's and torch's rounding, bit for bit, against ours (NaN payloads aside).
  size_t bad_h = 0, bad_b = 0;
  std::span<const uint8_t> rh = np.raw("x_f16"), rb = pt.raw("x_bf16");
  std::vector<float> hf = np.read_f32("x_f16"), bf = pt.read_f32("x_bf16");
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t h, b;
    std::memcpy(&h, rh.data() + 2 * i, 2);
    std::memcpy(&b, rb.data() + 2 * i, 2);
    bool nan = std::isnan(x[i]);
    if (nan ? !std::isnan(hf[i]) : h != f32_to_f16(x[i]) || bits(hf[i]) != bits(f16_to_f32(h)))
      if (bad_h++ < 5) ADD_FAILURE() << "f16 of " << x[i] << ": numpy 0x" << std::hex << h << " ours 0x" << f32_to_f16(x[i]);
    if (nan ? !std::isnan(bf[i]) : b != f32_to_bf16(x[i]) || bits(bf[i]) != bits(bf16_to_f32(b)))
      if (bad_b++ < 5) ADD_FAILURE() << "bf16 of " << x[i] << ": torch 0x" << std::hex << b << " ours 0x" << f32_to_bf16(x[i]);
  }
  std::printf("  1024 values: f16 mismatches %zu, bf16 mismatches %zu\n", bad_h, bad_b);

  EXPECT_EQ(np.find("ids")->dtype, StDtype::I64);
  std::vector<int64_t> ids(8);
  ASSERT_EQ(np.raw("ids").size(), 64u);
  std::memcpy(ids.data(), np.raw("ids").data(), 64);
  EXPECT_EQ(ids, (std::vector<int64_t>{-3, -2, -1, 0, 1, 2, 3, 4}));
  expect_input_error([&] { np.read_f32("ids"); }, "is I64");
  expect_same_bits(pt.read_f32("scalar"), {2.5f}, "scalar");
  EXPECT_EQ(pt.find("scalar")->shape, std::vector<int64_t>{});
  EXPECT_EQ(pt.find("empty")->shape, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(pt.read_f32("empty").empty());

  // huggingface_hub's sharded layout: we read it, and writing the same tensors with the same limit
  // gives byte-identical shards and the same index.
  SafetensorsCheckpoint hub(d / "sharded");
  ASSERT_EQ(hub.names().size(), 8u);
  EXPECT_EQ(hub.files().size(), 4u);
  std::vector<StTensorOut> parts;
  for (int i = 0; i < 8; ++i) {
    const std::string name = "layers." + std::to_string(i) + ".w";
    EXPECT_EQ(hub.info(name).shape, (std::vector<int64_t>{8, 16}));
    expect_same_bits(hub.read_f32(name), std::vector<float>(x.begin() + 128 * i, x.begin() + 128 * (i + 1)), name);
    parts.push_back({name, StDtype::F32, {8, 16}, x.data() + 128 * i});
  }
  write_safetensors_dir(d / "ours", parts, {{"format", "pt"}}, 1500);
  for (int k = 1; k <= 4; ++k) {
    const std::string shard = "model-0000" + std::to_string(k) + "-of-00004.safetensors";
    EXPECT_EQ(read_bytes(d / ("ours/" + shard)), read_bytes(d / ("sharded/" + shard))) << shard << " differs";
  }
  auto ours = nlohmann::json::parse(read_bytes(d / "ours/model.safetensors.index.json"));
  auto theirs = nlohmann::json::parse(read_bytes(d / "sharded/model.safetensors.index.json"));
  EXPECT_EQ(ours["weight_map"], theirs["weight_map"]);
  EXPECT_EQ(ours["metadata"]["total_size"], theirs["metadata"]["total_size"]);
}

TEST(SafetensorsPython, FilesWeWriteLoadInPython) {
  TempDir d;
  std::vector<float> x = edge_values();
  for (float v : st::randn(1001, 11, 100.0f)) x.push_back(v);
  const float scalar = -1.25f;
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"run", "ünïcode ✓"}};
  const std::string p = d / "ours.safetensors";
  write_safetensors(p,
                    {{"model.x", StDtype::F32, {int64_t(x.size())}, x.data()},
                     {"model.x_f16", StDtype::F16, {1, int64_t(x.size())}, x.data()},
                     {"model.x_bf16", StDtype::BF16, {int64_t(x.size()), 1}, x.data()},
                     {"scalar", StDtype::F32, {}, &scalar},
                     {"empty", StDtype::BF16, {3, 0}, nullptr}},
                    meta);
  std::string out, why;
  if (!oracle("read " + st::shell_quote(p), &out, &why)) GTEST_SKIP() << why;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ((j["metadata"].get<std::map<std::string, std::string>>()), meta);
  ASSERT_EQ(j["tensors"].size(), 5u);
  SafetensorsFile f(p);
  for (const auto& t : f.tensors()) {
    SCOPED_TRACE(t.name);
    const auto& py = j["tensors"][t.name];
    EXPECT_EQ(py["dtype"].get<std::string>(), st_dtype_name(t.dtype));
    EXPECT_EQ(py["shape"].get<std::vector<int64_t>>(), t.shape);
    EXPECT_EQ(py["hex"].get<std::string>(), hex(f.raw(t.name))) << "stored bytes differ";
    EXPECT_EQ(py["f32hex"].get<std::string>(), hex(bytes_of(f.read_f32(t.name)))) << "Python decodes different values";
  }
}
