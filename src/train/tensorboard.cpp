#include "train/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "train/crc32c.h"

namespace fs = std::filesystem;

namespace strata {

namespace {

// Protobuf wire format: key = (field << 3) | wire type; 0 varint, 1 fixed64, 2 length-delimited,
// 5 fixed32. Little-endian fixed fields; this file assumes a little-endian host (x86-64, aarch64).
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
void put_key(std::string& out, int field, int wire) { put_varint(out, uint64_t(field) << 3 | uint64_t(wire)); }
template <class T> void put_fixed(std::string& out, int field, T v) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  put_key(out, field, sizeof(T) == 8 ? 1 : 5);
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& s) {
  put_key(out, field, 2);
  put_varint(out, s.size());
  out += s;
}

constexpr double kAutoFlushSeconds = 5.0;

}  // namespace

double unix_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string tfrecord_frame(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  uint64_t len = data.size();
  char lb[8];
  std::memcpy(lb, &len, 8);
  uint32_t len_crc = crc32c_mask(crc32c(lb, 8)), data_crc = crc32c_mask(crc32c(data.data(), data.size()));
  out.append(lb, 8);
  out.append(reinterpret_cast<const char*>(&len_crc), 4);
  out += data;
  out.append(reinterpret_cast<const char*>(&data_crc), 4);
  return out;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("TensorBoard: cannot create directory '{}': {}", dir, ec.message()));
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) std::strcpy(host, "localhost");
  double now = unix_time_now();
  std::string base = (fs::path(dir) / fmt::format("events.out.tfevents.{}.{}", int64_t(now), host)).string();
  // O_EXCL: never truncate another writer's file (two runs, or a resume, in the same second).
  for (int n = 0; n < 1000 && !f_; ++n) {
    path_ = n == 0 ? base : fmt::format("{}.{}", base, n);
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      throw Error(fmt::format("TensorBoard: cannot create '{}': {}", path_, std::strerror(errno)));
    }
    f_ = fdopen(fd, "wb");
    if (!f_) {
      ::close(fd);
      throw Error(fmt::format("TensorBoard: fdopen '{}' failed: {}", path_, std::strerror(errno)));
    }
  }
  if (!f_) throw Error(fmt::format("TensorBoard: no free event file name like '{}'", base));
  event_.clear();
  put_fixed(event_, 1, now);
  put_bytes(event_, 3, "brain.Event:2");
  write_record(event_);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_) std::fclose(f_);  // flushes; errors cannot be reported from a destructor
}

void TensorBoardWriter::write_record(const std::string& data) {
  std::string rec = tfrecord_frame(data);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size())
    throw Error(fmt::format("TensorBoard: writing '{}' failed: {}", path_, std::strerror(errno)));
}

void TensorBoardWriter::add_scalar(const std::string& tag, int64_t step, float value, double wall_time) {
  summary_.clear();
  // Summary{value{tag, simple_value}}: Value's encoding is nested inside Summary's field 1.
  std::string v;
  put_bytes(v, 1, tag);
  put_fixed(v, 2, value);
  put_bytes(summary_, 1, v);
  event_.clear();
  put_fixed(event_, 1, wall_time);
  put_key(event_, 2, 0);
  put_varint(event_, uint64_t(step));  // int64: negatives take ten bytes, as protobuf specifies
  put_bytes(event_, 5, summary_);
  write_record(event_);
  double now = unix_time_now();
  if (now - last_flush_ > kAutoFlushSeconds) flush();
}

void TensorBoardWriter::flush() {
  if (std::fflush(f_) != 0) throw Error(fmt::format("TensorBoard: flushing '{}' failed: {}", path_, std::strerror(errno)));
  last_flush_ = unix_time_now();
}

}  // namespace strata
