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

namespace {

// google.protobuf.Value: 2 number_value, 3 string_value, 4 bool_value.
std::string proto_value(const HParam& h) {
  std::string v;
  if (h.kind == HParam::number) put_fixed(v, 2, h.num);
  else if (h.kind == HParam::string) put_bytes(v, 3, h.text);
  else put_key(v, 4, 0), put_varint(v, h.flag ? 1 : 0);
  return v;
}

// HParamsPluginData{1: version = 0 (the default, so not written), <field>: message}.
std::string plugin_data(int field, const std::string& message) {
  std::string out;
  put_bytes(out, field, message);
  return out;
}

}  // namespace

void TensorBoardWriter::write_hparams(const std::string& tag, const std::string& data, double wall_time) {
  std::string plugin;  // SummaryMetadata.PluginData
  put_bytes(plugin, 1, "hparams");
  put_bytes(plugin, 2, data);
  std::string meta;
  put_bytes(meta, 1, plugin);
  // The plugin's NULL_TENSOR: TensorProto{dtype: DT_FLOAT, tensor_shape{dim{size: 0}}}.
  const std::string null_tensor("\x08\x01\x12\x02\x12\x00", 6);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 8, null_tensor);
  put_bytes(v, 9, meta);
  summary_.clear();
  put_bytes(summary_, 1, v);
  event_.clear();
  put_fixed(event_, 1, wall_time);
  put_bytes(event_, 5, summary_);
  write_record(event_);
  flush();  // rare, and a sweep's table should see it at once
}

void TensorBoardWriter::add_hparams_experiment(const std::vector<HParam>& hparams, const std::vector<std::string>& metric_tags,
                                               double wall_time) {
  std::string exp;  // api.proto Experiment: 3 time_created_secs, 4 hparam_infos, 5 metric_infos
  put_fixed(exp, 3, wall_time);
  for (const HParam& h : hparams) {
    std::string info;  // HParamInfo{1: name, 4: type (1 string, 2 bool, 3 float64)}
    put_bytes(info, 1, h.name);
    put_key(info, 4, 0);
    put_varint(info, h.kind == HParam::string ? 1 : h.kind == HParam::boolean ? 2 : 3);
    put_bytes(exp, 4, info);
  }
  for (const std::string& tag : metric_tags) {
    std::string name;  // MetricName{2: tag}; MetricInfo{1: name}
    put_bytes(name, 2, tag);
    std::string info;
    put_bytes(info, 1, name);
    put_bytes(exp, 5, info);
  }
  write_hparams("_hparams_/experiment", plugin_data(2, exp), wall_time);
}

void TensorBoardWriter::add_hparams_session_start(const std::vector<HParam>& hparams, const std::string& group_name,
                                                  double wall_time) {
  std::string start;  // SessionStartInfo{1: map<string, Value> hparams, 4: group_name, 5: start_time_secs}
  for (const HParam& h : hparams) {
    std::string entry;  // a map entry is a message {1: key, 2: value}
    put_bytes(entry, 1, h.name);
    put_bytes(entry, 2, proto_value(h));
    put_bytes(start, 1, entry);
  }
  if (!group_name.empty()) put_bytes(start, 4, group_name);
  put_fixed(start, 5, wall_time);
  write_hparams("_hparams_/session_start_info", plugin_data(3, start), wall_time);
}

void TensorBoardWriter::add_hparams_session_end(HParamsStatus status, double wall_time) {
  std::string end;  // SessionEndInfo{1: status, 2: end_time_secs}
  put_key(end, 1, 0);
  put_varint(end, uint64_t(status));
  put_fixed(end, 2, wall_time);
  write_hparams("_hparams_/session_end_info", plugin_data(4, end), wall_time);
}

void TensorBoardWriter::flush() {
  if (std::fflush(f_) != 0) throw Error(fmt::format("TensorBoard: flushing '{}' failed: {}", path_, std::strerror(errno)));
  last_flush_ = unix_time_now();
}

}  // namespace strata
