// CRC32C against published vectors and a bit-by-bit reference; TensorBoard event files read back by
// our own decoder and by TensorBoard itself; the JSONL metrics writer.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "python_oracle.h"
#include "temp_dir.h"
#include "testing.h"
#include "train/crc32c.h"
#include "train/metrics.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;

namespace {

struct TempDir : st::TempDir {
  TempDir() : st::TempDir("strata_tb_") {}
};

// The definition, one bit at a time: reflected CRC-32C, init and final xor ~0.
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t c = ~0u;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
  }
  return ~c;
}

std::string random_bytes(size_t n, uint64_t seed) {
  Rng r(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(r.next_u32());
  return s;
}

using strata::testing::read_bytes;

// ---- a minimal independent decoder for what TensorBoardWriter writes ----

struct Reader {
  const std::string& s;
  size_t pos = 0;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      EXPECT_LT(pos, s.size());
      if (pos >= s.size()) return v;
      uint8_t b = uint8_t(s[pos++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  }
  template <class T> T fixed() {
    T v{};
    EXPECT_LE(pos + sizeof(T), s.size());
    if (pos + sizeof(T) <= s.size()) std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string bytes() {
    size_t n = size_t(varint());
    std::string out = s.substr(pos, n);
    pos += n;
    return out;
  }
  bool done() const { return pos >= s.size(); }
};

struct Event {
  double wall_time = -1;
  int64_t step = 0;
  std::string file_version, tag;
  float value = 0;
  bool has_value = false;
};

Event decode_event(const std::string& data) {
  Event e;
  Reader r{data};
  while (!r.done()) {
    uint64_t key = r.varint();
    switch (key) {
      case (1 << 3) | 1: e.wall_time = r.fixed<double>(); break;
      case (2 << 3) | 0: e.step = int64_t(r.varint()); break;
      case (3 << 3) | 2: e.file_version = r.bytes(); break;
      case (5 << 3) | 2: {
        std::string summary = r.bytes();
        Reader rs{summary};
        EXPECT_EQ(rs.varint(), uint64_t((1 << 3) | 2));  // Summary.value
        std::string value = rs.bytes();
        EXPECT_TRUE(rs.done());
        Reader rv{value};
        while (!rv.done()) {
          uint64_t k = rv.varint();
          if (k == ((1 << 3) | 2)) e.tag = rv.bytes();
          else if (k == ((2 << 3) | 5)) e.value = rv.fixed<float>(), e.has_value = true;
          else ADD_FAILURE() << "unexpected Value field key " << k;
        }
        break;
      }
      default: ADD_FAILURE() << "unexpected Event field key " << key; return e;
    }
  }
  return e;
}

// Splits a TFRecord file into records, checking both masked CRCs with the bitwise reference.
std::vector<std::string> read_records(const std::string& file) {
  auto mask = [](uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; };
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < file.size()) {
    if (pos + 12 > file.size()) {
      ADD_FAILURE() << "truncated header at " << pos;
      break;
    }
    uint64_t len;
    uint32_t len_crc, data_crc;
    std::memcpy(&len, file.data() + pos, 8);
    std::memcpy(&len_crc, file.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, mask(crc32c_bitwise(file.substr(pos, 8)))) << "length crc at " << pos;
    if (pos + 12 + len + 4 > file.size()) {
      ADD_FAILURE() << "truncated record at " << pos;
      break;
    }
    std::string data = file.substr(pos + 12, size_t(len));
    std::memcpy(&data_crc, file.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, mask(crc32c_bitwise(data))) << "data crc at " << pos;
    out.push_back(data);
    pos += 12 + size_t(len) + 4;
  }
  return out;
}

struct Scalar {
  std::string tag;
  int64_t step;
  float value;
  double wall_time;
};

// A mix of tags, steps (0, sparse, large) and values (tiny, huge, negative, non-round).
std::vector<Scalar> sample_scalars() {
  std::vector<Scalar> v;
  Rng r(5);
  for (int64_t i = 0; i < 40; ++i) v.push_back({"train/loss", i * 3, 4.0f - 0.1f * float(i) + r.normal() * 1e-3f, 1.7e9 + 0.123456789 * double(i)});
  for (int64_t i = 0; i < 5; ++i) v.push_back({"val/loss", (int64_t(1) << 40) + i, -1e-30f * float(i + 1), 1.7e9 + 100 + double(i)});
  v.push_back({"train/lr", 7, 3.4e38f, 1.75e9});
  v.push_back({"métrique/ünicode", 1, 0.1f, 1.75e9 + 0.5});
  return v;
}

std::vector<std::string> event_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Runs tests/tensorboard_read.py on dir; "" + GTEST_SKIP-worthy reason in *why if no venv.
nlohmann::json tensorboard_read(const std::string& dir, std::string* why) {
  std::string py = st::test_python(why);
  if (py.empty()) return nullptr;
  std::string out;
  int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/tests/tensorboard_read.py") + " " +
                               st::shell_quote(dir) + " 2>/dev/null",
                           &out);
  EXPECT_EQ(rc, 0) << out;
  return nlohmann::json::parse(out);
}

}  // namespace

// ---- CRC32C ----

TEST(Crc32c, KnownVectors) {
  // The classic check value, and RFC 3720 (iSCSI) appendix B.4.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  std::string zeros(32, '\0'), ones(32, '\xff'), inc(32, 0), dec(32, 0);
  for (int i = 0; i < 32; ++i) inc[size_t(i)] = char(i), dec[size_t(i)] = char(31 - i);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec.data(), 32), 0x113FDB5Cu);
  for (auto* s : {&zeros, &ones, &inc, &dec}) EXPECT_EQ(crc32c_extend_table(0, s->data(), 32), crc32c(s->data(), 32));
  EXPECT_EQ(crc32c_bitwise("123456789"), 0xE3069283u);  // the test's own reference is right too
}

TEST(Crc32c, MatchesBitwiseReferenceAtAnyLengthAndAlignment) {
  std::string buf = random_bytes(1200, 1);
  Rng r(2);
  int checked = 0;
  for (size_t off = 0; off < 9; ++off)
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(15), size_t(16), size_t(63), size_t(64),
                     size_t(65), size_t(1000), size_t(1191)}) {
      std::string s = buf.substr(off, n);
      uint32_t want = crc32c_bitwise(s);
      ASSERT_EQ(crc32c(buf.data() + off, n), want) << "off " << off << " n " << n;
      ASSERT_EQ(crc32c_extend_table(0, buf.data() + off, n), want) << "off " << off << " n " << n;
      // Extending across an arbitrary split gives the CRC of the whole.
      size_t cut = n ? size_t(r.below(n + 1)) : 0;
      uint32_t head = crc32c(buf.data() + off, cut);
      ASSERT_EQ(crc32c_extend(head, buf.data() + off + cut, n - cut), want);
      ASSERT_EQ(crc32c_extend_table(head, buf.data() + off + cut, n - cut), want);
      ++checked;
    }
  std::printf("  %d (offset, length) cases match the bitwise reference\n", checked);
}

// ---- TensorBoard ----

TEST(TensorBoard, FileNameFramingAndEncoding) {
  TempDir d;
  auto scalars = sample_scalars();
  std::string path;
  {
    TensorBoardWriter w(d / "sub/dir");  // created on demand
    path = w.path();
    for (auto& s : scalars) w.add_scalar(s.tag, s.step, s.value, s.wall_time);
    w.add_scalar("train/now", 1, 2.0f);  // default wall time = now
  }
  std::string name = fs::path(path).filename().string();
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string prefix = "events.out.tfevents.";
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  size_t dot = name.find('.', prefix.size());
  std::string secs = name.substr(prefix.size(), dot - prefix.size());
  EXPECT_TRUE(!secs.empty() && std::all_of(secs.begin(), secs.end(), ::isdigit)) << name;
  EXPECT_NEAR(std::stod(secs), unix_time_now(), 60.0);
  EXPECT_EQ(name.substr(dot + 1), host);

  auto records = read_records(read_bytes(path));
  ASSERT_EQ(records.size(), scalars.size() + 2);
  Event first = decode_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_NEAR(first.wall_time, unix_time_now(), 60.0);
  EXPECT_FALSE(first.has_value);
  for (size_t i = 0; i < scalars.size(); ++i) {
    Event e = decode_event(records[i + 1]);
    EXPECT_EQ(e.tag, scalars[i].tag);
    EXPECT_EQ(e.step, scalars[i].step);
    EXPECT_EQ(e.value, scalars[i].value);
    EXPECT_EQ(e.wall_time, scalars[i].wall_time);
  }
  Event last = decode_event(records.back());
  EXPECT_NEAR(last.wall_time, unix_time_now(), 60.0);

  // A frame around empty data is 16 bytes with the CRCs of 8 zero bytes and of nothing.
  std::string f = tfrecord_frame("");
  ASSERT_EQ(f.size(), 16u);
  EXPECT_EQ(read_records(f), std::vector<std::string>{""});
}

TEST(TensorBoard, SecondWriterInTheSameSecondGetsItsOwnFile) {
  TempDir d;
  TensorBoardWriter a(d.path.string()), b(d.path.string());
  EXPECT_NE(a.path(), b.path());
  a.add_scalar("x", 1, 1.0f, 10.0);
  b.add_scalar("x", 2, 2.0f, 11.0);
  a.flush();
  b.flush();
  EXPECT_EQ(event_files(d.path).size(), 2u);
  EXPECT_EQ(read_records(read_bytes(a.path())).size(), 2u);
  EXPECT_EQ(read_records(read_bytes(b.path())).size(), 2u);
  std::ofstream(d / "a_file") << "x";
  EXPECT_THROW(TensorBoardWriter(d / "a_file"), Error);  // not a directory
}

// The real consumer: TensorBoard's EventAccumulator (which checks both CRCs of every record).
TEST(TensorBoard, TensorBoardReadsOurEvents) {
  TempDir d;
  auto scalars = sample_scalars();
  TensorBoardWriter w(d.path.string());
  for (auto& s : scalars) w.add_scalar(s.tag, s.step, s.value, s.wall_time);
  w.flush();  // readable while the writer is still open
  std::string why;
  auto j = tensorboard_read(d.path.string(), &why);
  if (j.is_null()) GTEST_SKIP() << "no Python test venv: " << why;
  EXPECT_EQ(j["file_version"], 2.0);
  std::map<std::string, std::vector<const Scalar*>> want;
  for (auto& s : scalars) want[s.tag].push_back(&s);
  ASSERT_EQ(j["scalars"].size(), want.size()) << j.dump();
  size_t n = 0;
  for (auto& [tag, list] : want) {
    auto& got = j["scalars"][tag];
    ASSERT_EQ(got.size(), list.size()) << tag;
    for (size_t i = 0; i < list.size(); ++i, ++n) {
      EXPECT_EQ(got[i][0].get<int64_t>(), list[i]->step) << tag;
      EXPECT_EQ(float(got[i][1].get<double>()), list[i]->value) << tag << " step " << list[i]->step;
      EXPECT_EQ(got[i][2].get<double>(), list[i]->wall_time) << tag;
    }
  }
  std::printf("  TensorBoard read back %zu scalars in %zu tags, all exact\n", n, want.size());

  // Control: a record whose data CRC is wrong is rejected by TensorBoard, so the match above really
  // vouches for our CRCs and framing.
  std::string file = read_bytes(w.path());
  file[file.size() - 6] ^= 0x01;  // the last record's data ends with its float; then 4 CRC bytes
  TempDir d2;
  std::ofstream(d2 / fs::path(w.path()).filename().string(), std::ios::binary).write(file.data(), std::streamsize(file.size()));
  auto j2 = tensorboard_read(d2.path.string(), &why);
  size_t n2 = 0;
  for (auto& [tag, list] : j2["scalars"].items()) n2 += list.size();
  EXPECT_EQ(n2, n - 1) << "TensorBoard accepted a record with a bad CRC";
}

// ---- metrics ----

std::vector<std::string> lines_of(const std::string& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

TEST(Metrics, OneFlushedJsonObjectPerLine) {
  TempDir d;
  std::string p = d / "run/metrics.jsonl";
  nlohmann::json a = {{"step", 1}, {"loss", 2.5}, {"lr", 1e-3}, {"tag", "x\ny\"z"}};
  nlohmann::json b = {{"step", int64_t(1) << 40}, {"val_loss", 0.125}};
  {
    MetricsWriter w(p, /*append=*/false);
    w.write(a);
    // Visible to a reader immediately, before the writer is closed.
    auto l = lines_of(p);
    ASSERT_EQ(l.size(), 1u);
    EXPECT_EQ(nlohmann::json::parse(l[0]), a);
    w.write(b);
    w.write({{"loss", std::nan("")}, {"inf", std::numeric_limits<double>::infinity()}});
    l = lines_of(p);
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(nlohmann::json::parse(l[1]), b);
    auto c = nlohmann::json::parse(l[2]);  // non-finite numbers become null, still valid JSON
    EXPECT_TRUE(c["loss"].is_null());
    EXPECT_TRUE(c["inf"].is_null());
  }
  {
    MetricsWriter w(p, /*append=*/true);
    w.write({{"step", 2}});
  }
  auto l = lines_of(p);
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(l[3])["step"], 2);
  {
    MetricsWriter w(p, /*append=*/false);  // a fresh run truncates
    w.write({{"step", 9}});
  }
  l = lines_of(p);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(l[0])["step"], 9);
}

TEST(Metrics, AppendAfterATornLineStartsANewLine) {
  TempDir d;
  std::string p = d / "m.jsonl";
  std::ofstream(p) << "{\"step\": 1}\n{\"step\": 2, \"lo";  // a crash mid-write
  {
    MetricsWriter w(p, true);
    w.write({{"step", 3}});
  }
  auto l = lines_of(p);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(l[0])["step"], 1);
  EXPECT_EQ(l[1], "{\"step\": 2, \"lo");
  EXPECT_EQ(nlohmann::json::parse(l[2])["step"], 3);
  // A missing file in append mode is simply created.
  MetricsWriter(d / "new.jsonl", true).write({{"a", 1}});
  EXPECT_EQ(lines_of(d / "new.jsonl").size(), 1u);
  EXPECT_THROW(MetricsWriter(d.path.string(), false), Error);  // a directory
}
