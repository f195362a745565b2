#include "interop/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fsync.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace strata {

namespace {

// The Rust reference refuses headers above 100 MB; so do we, before allocating anything.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeRow {
  StDtype dtype;
  std::string_view name;
  size_t size;
};
constexpr DtypeRow kDtypes[] = {
    {StDtype::F64, "F64", 8}, {StDtype::F32, "F32", 4}, {StDtype::F16, "F16", 2}, {StDtype::BF16, "BF16", 2},
    {StDtype::I64, "I64", 8}, {StDtype::I32, "I32", 4}, {StDtype::I16, "I16", 2}, {StDtype::I8, "I8", 1},
    {StDtype::U8, "U8", 1},   {StDtype::BOOL, "BOOL", 1},
};

const DtypeRow& row_of(StDtype t) {
  for (auto& r : kDtypes)
    if (r.dtype == t) return r;
  throw Error(fmt::format("safetensors: invalid StDtype {}", int(t)));
}

template <class... A> [[noreturn]] void bad_file(const std::string& what, fmt::format_string<A...> f, A&&... a) {
  throw InputError(fmt::format("safetensors '{}': {}", what, fmt::format(f, std::forward<A>(a)...)));
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// A non-negative JSON integer (nlohmann keeps "-0" as a signed integer, "1.0" and "1e3" as floats).
bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = uint64_t(v.get<int64_t>());
    return true;
  }
  return false;
}

// Parses JSON, refusing duplicate keys at any depth (nlohmann would silently keep the last one, so a
// file could mean different things to different readers).
json parse_json_unique_keys(const char* begin, const char* end, const std::string& what) {
  std::vector<std::set<std::string>> open;  // keys seen in each enclosing object
  std::string dup;
  json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) open.emplace_back();
    else if (ev == json::parse_event_t::object_end) open.pop_back();
    else if (ev == json::parse_event_t::key && !open.empty() && !open.back().insert(parsed.get<std::string>()).second &&
             dup.empty())
      dup = parsed.get<std::string>();
    return true;
  };
  json j;
  try {
    j = json::parse(begin, end, cb);
  } catch (const json::exception& e) {
    bad_file(what, "header is not valid JSON: {}", e.what());
  }
  if (!dup.empty()) bad_file(what, "header has the key '{}' twice", dup);
  return j;
}

StTensorInfo parse_entry(const std::string& name, const json& e, uint64_t data_len, const std::string& what) {
  if (!e.is_object()) bad_file(what, "tensor '{}': entry is a JSON {}, not an object", name, e.type_name());
  for (const char* k : {"dtype", "shape", "data_offsets"})
    if (!e.contains(k)) bad_file(what, "tensor '{}': missing \"{}\"", name, k);
  StTensorInfo t;
  t.name = name;
  const json& dt = e["dtype"];
  if (!dt.is_string()) bad_file(what, "tensor '{}': dtype is not a string", name);
  const DtypeRow* row = nullptr;
  for (auto& r : kDtypes)
    if (r.name == dt.get_ref<const std::string&>()) row = &r;
  if (!row) bad_file(what, "tensor '{}': unknown dtype '{}'", name, dt.get_ref<const std::string&>());
  t.dtype = row->dtype;

  const json& sh = e["shape"];
  if (!sh.is_array()) bad_file(what, "tensor '{}': shape is not an array", name);
  uint64_t numel = 1;
  for (const json& d : sh) {
    uint64_t v;
    if (!as_u64(d, &v) || v > uint64_t(INT64_MAX)) bad_file(what, "tensor '{}': shape entries must be non-negative integers", name);
    t.shape.push_back(int64_t(v));
    if (__builtin_mul_overflow(numel, v, &numel)) bad_file(what, "tensor '{}': shape {} overflows", name, shape_str(t.shape));
  }
  uint64_t bytes;
  if (__builtin_mul_overflow(numel, uint64_t(row->size), &bytes))
    bad_file(what, "tensor '{}': shape {} overflows", name, shape_str(t.shape));

  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !as_u64(off[0], &t.begin) || !as_u64(off[1], &t.end))
    bad_file(what, "tensor '{}': data_offsets must be two non-negative integers [begin, end]", name);
  if (t.end < t.begin) bad_file(what, "tensor '{}': data_offsets [{}, {}] end before begin", name, t.begin, t.end);
  if (t.end > data_len)
    bad_file(what, "tensor '{}': data_offsets [{}, {}] out of range: the data buffer has {} bytes (file truncated?)", name,
             t.begin, t.end, data_len);
  if (t.end - t.begin != bytes)
    bad_file(what, "tensor '{}': data_offsets [{}, {}] span {} bytes, but {} {} needs {}", name, t.begin, t.end,
             t.end - t.begin, row->name, shape_str(t.shape), bytes);
  return t;
}

}  // namespace

std::string_view st_dtype_name(StDtype t) { return row_of(t).name; }
size_t st_dtype_size(StDtype t) { return row_of(t).size; }

int64_t StTensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

StHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size, const std::string& what) {
  if (size < 8 || file_size < 8)
    bad_file(what, "file is {} bytes, too short for the 8-byte header length", std::min<uint64_t>(size, file_size));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | data[i];  // little-endian
  if (n > kMaxHeaderBytes) bad_file(what, "header length {} is absurd (limit {}): not a safetensors file?", n, kMaxHeaderBytes);
  if (8 + n > file_size) bad_file(what, "header length {} goes beyond the end of the {}-byte file", n, file_size);
  if (8 + n > size) bad_file(what, "header length {} but only {} bytes were given to the parser", n, size);

  const char* h = reinterpret_cast<const char*>(data + 8);
  json j = parse_json_unique_keys(h, h + n, what);
  if (!j.is_object()) bad_file(what, "header is a JSON {}, not an object", j.type_name());

  StHeader out;
  out.data_start = 8 + n;
  const uint64_t data_len = file_size - out.data_start;
  for (auto& [key, val] : j.items()) {
    if (key == "__metadata__") {
      if (val.is_null()) continue;
      if (!val.is_object()) bad_file(what, "__metadata__ is a JSON {}, not an object", val.type_name());
      for (auto& [mk, mv] : val.items()) {
        if (!mv.is_string()) bad_file(what, "__metadata__ value of '{}' is a JSON {}, not a string", mk, mv.type_name());
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    out.tensors.push_back(parse_entry(key, val, data_len, what));
  }

  // The tensors must tile the data buffer: sorted by offset, each starts where the previous ended,
  // and the last ends at the end of the file. This rules out overlaps, holes and trailing bytes.
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const StTensorInfo& a, const StTensorInfo& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t pos = 0;
  const StTensorInfo* prev = nullptr;
  for (auto& t : out.tensors) {
    if (t.begin < pos)
      bad_file(what, "tensors '{}' and '{}' overlap (data_offsets [{}, {}] and [{}, {}])", prev->name, t.name, prev->begin,
               prev->end, t.begin, t.end);
    if (t.begin > pos) bad_file(what, "gap in the data buffer: bytes [{}, {}) belong to no tensor (before '{}')", pos, t.begin, t.name);
    pos = t.end;
    prev = &t;
  }
  if (pos != data_len)
    bad_file(what, "the data buffer has {} bytes but the tensors cover only {}: trailing bytes after the last tensor", data_len, pos);
  return out;
}

// ---- SafetensorsFile -----------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(fmt::format("safetensors '{}': cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(fmt::format("safetensors '{}': not a regular file", path));
  }
  map_size_ = size_t(st.st_size);
  if (map_size_ > 0) {
    void* m = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (m == MAP_FAILED) throw InputError(fmt::format("safetensors '{}': mmap failed: {}", path, std::strerror(err)));
    map_ = static_cast<const uint8_t*>(m);
  } else {
    ::close(fd);
  }
  try {
    header_ = parse_safetensors_header(map_, map_size_, map_size_, path);
  } catch (...) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
    throw;
  }
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      header_(std::move(o.header_)),
      index_(std::move(o.index_)),
      map_(std::exchange(o.map_, nullptr)),
      map_size_(std::exchange(o.map_size_, 0)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
    path_ = std::move(o.path_);
    header_ = std::move(o.header_);
    index_ = std::move(o.index_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
  }
  return *this;
}

const StTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const StTensorInfo& SafetensorsFile::at(const std::string& name) const {
  const StTensorInfo* t = find(name);
  if (!t) throw InputError(fmt::format("safetensors '{}': no tensor '{}'", path_, name));
  return *t;
}

std::span<const uint8_t> SafetensorsFile::raw(const std::string& name) const {
  const StTensorInfo& t = at(name);
  if (t.end == t.begin) return {};
  return {map_ + header_.data_start + t.begin, size_t(t.end - t.begin)};
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
  const StTensorInfo& t = at(name);
  std::span<const uint8_t> b = raw(name);
  const size_t n = size_t(t.numel());
  std::vector<float> out(n);
  // memcpy per element: the data buffer has no alignment guarantee (it starts right after the header).
  auto convert = [&]<class S>(auto f) {
    for (size_t i = 0; i < n; ++i) {
      S s;
      std::memcpy(&s, b.data() + i * sizeof(S), sizeof(S));
      out[i] = f(s);
    }
  };
  switch (t.dtype) {
    case StDtype::F32: if (n) std::memcpy(out.data(), b.data(), n * 4); break;
    case StDtype::F16: convert.operator()<uint16_t>(f16_to_f32); break;
    case StDtype::BF16: convert.operator()<uint16_t>(bf16_to_f32); break;
    case StDtype::F64: convert.operator()<double>([](double d) { return float(d); }); break;
    default:
      throw InputError(fmt::format("safetensors '{}': tensor '{}' is {}; only F32, F16, BF16 and F64 read as float", path_,
                                   name, st_dtype_name(t.dtype)));
  }
  return out;
}

// ---- SafetensorsCheckpoint -----------------------------------------------------------------------

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir_or_file) : where_(dir_or_file) {
  const fs::path p(dir_or_file);
  std::error_code ec;
  fs::path index;
  if (fs::is_directory(p, ec)) {
    // Like transformers: the single file wins over an index when both are present.
    if (fs::exists(p / "model.safetensors", ec)) files_.emplace_back((p / "model.safetensors").string());
    else if (fs::exists(p / "model.safetensors.index.json", ec)) index = p / "model.safetensors.index.json";
    else
      throw InputError(fmt::format("checkpoint '{}': no model.safetensors or model.safetensors.index.json in this directory",
                                   dir_or_file));
  } else if (p.filename().string().ends_with(".index.json")) {
    index = p;
  } else {
    files_.emplace_back(dir_or_file);
  }

  std::map<std::string, std::string> weight_map;  // from the index, checked against the shards below
  if (!index.empty()) {
    const std::string ip = index.string();
    std::ifstream f(ip, std::ios::binary);
    if (!f) throw InputError(fmt::format("safetensors index '{}': cannot open", ip));
    json j;
    try {
      j = json::parse(f);
    } catch (const json::exception& e) {
      throw InputError(fmt::format("safetensors index '{}': not valid JSON: {}", ip, e.what()));
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(fmt::format("safetensors index '{}': no \"weight_map\" object", ip));
    std::map<std::string, size_t> shard_index;
    for (auto& [name, shard] : j["weight_map"].items()) {
      if (!shard.is_string()) throw InputError(fmt::format("safetensors index '{}': weight_map['{}'] is not a string", ip, name));
      const fs::path rel(shard.get<std::string>());
      if (rel.empty() || rel.is_absolute() || std::find(rel.begin(), rel.end(), "..") != rel.end())
        throw InputError(fmt::format("safetensors index '{}': shard '{}' must be a path inside the directory", ip, rel.string()));
      const fs::path sp = index.parent_path() / rel;
      if (!shard_index.contains(sp.string())) {
        if (!fs::is_regular_file(sp, ec))
          throw InputError(fmt::format("safetensors index '{}': shard '{}' (holding '{}') does not exist", ip, sp.string(), name));
        shard_index[sp.string()] = 0;
      }
      weight_map[name] = sp.string();
    }
    for (auto& [sp, i] : shard_index) {
      i = files_.size();
      files_.emplace_back(sp);
    }
    for (auto& [name, sp] : weight_map)
      if (!files_[shard_index[sp]].find(name))
        throw InputError(fmt::format("safetensors index '{}': maps '{}' to shard '{}', which does not contain it", ip, name, sp));
  }

  for (size_t i = 0; i < files_.size(); ++i)
    for (auto& t : files_[i].tensors())
      if (!shard_of_.emplace(t.name, i).second)
        throw InputError(fmt::format("checkpoint '{}': tensor '{}' is in both '{}' and '{}'", where_, t.name,
                                     files_[shard_of_[t.name]].path(), files_[i].path()));
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (auto& [name, i] : shard_of_) out.push_back(name);
  return out;  // std::map: already sorted
}

bool SafetensorsCheckpoint::contains(const std::string& name) const { return shard_of_.contains(name); }

const SafetensorsFile& SafetensorsCheckpoint::file_of(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) throw InputError(fmt::format("checkpoint '{}': no tensor '{}'", where_, name));
  return files_[it->second];
}

const StTensorInfo& SafetensorsCheckpoint::info(const std::string& name) const { return *file_of(name).find(name); }

std::vector<float> SafetensorsCheckpoint::read_f32(const std::string& name) const { return file_of(name).read_f32(name); }

// ---- writing -------------------------------------------------------------------------------------

namespace {

// Writes `path` via "<path>.tmp": fill() streams the content, then fsync, rename, fsync the directory,
// so a crash leaves either the old file or the complete new one.
template <class Fill> void write_atomically(const std::string& path, Fill&& fill) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot create '{}': {}", tmp, std::strerror(errno)));
  auto put = [&](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, c, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw Error(fmt::format("writing '{}' failed: {}", tmp, std::strerror(errno)));
      c += w;
      n -= size_t(w);
    }
  };
  try {
    fill(put);
    if (::fsync(fd) != 0) throw Error(fmt::format("fsync '{}' failed: {}", tmp, std::strerror(errno)));
    if (::close(std::exchange(fd, -1)) != 0) throw Error(fmt::format("closing '{}' failed: {}", tmp, std::strerror(errno)));
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error(fmt::format("rename '{}' -> '{}' failed: {}", tmp, path, std::strerror(errno)));
    const fs::path parent = fs::path(path).parent_path();
    fsync_path(parent.empty() ? "." : parent.string(), true);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

uint64_t out_bytes(const StTensorOut& t) {
  uint64_t n = 1;
  for (auto d : t.shape) n *= uint64_t(d);
  return n * st_dtype_size(t.dtype);
}

void validate_out(const std::string& path, const std::vector<StTensorOut>& tensors) {
  std::set<std::string> seen;
  for (auto& t : tensors) {
    auto bad = [&](const std::string& why) {
      throw InputError(fmt::format("write safetensors '{}': tensor '{}': {}", path, t.name, why));
    };
    if (t.name.empty() || t.name == "__metadata__") bad("invalid name");
    if (!seen.insert(t.name).second) bad("name used twice");
    if (t.dtype != StDtype::F32 && t.dtype != StDtype::F16 && t.dtype != StDtype::BF16)
      bad(fmt::format("dtype {} cannot be written from float data (F32, F16, BF16 only)", st_dtype_name(t.dtype)));
    int64_t n = 1;
    for (auto d : t.shape) {
      if (d < 0) bad(fmt::format("negative dimension in shape {}", shape_str(t.shape)));
      n *= d;
    }
    if (n > 0 && !t.data) bad("no data");
  }
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  validate_out(path, tensors);
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t pos = 0;
  for (auto& t : tensors) {
    const uint64_t b = out_bytes(t);
    h[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {pos, pos + b}}};
    pos += b;
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {  // a name or metadata string that is not UTF-8
    throw InputError(fmt::format("write safetensors '{}': {}", path, e.what()));
  }
  header.append((8 - header.size() % 8) % 8, ' ');  // keeps the data buffer 8-byte aligned

  write_atomically(path, [&](auto&& put) {
    const uint64_t n = header.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    put(len, 8);
    put(header.data(), header.size());
    std::vector<uint16_t> half;  // converted in chunks, never a full copy of a large tensor
    for (auto& t : tensors) {
      const size_t numel = size_t(out_bytes(t) / st_dtype_size(t.dtype));
      if (t.dtype == StDtype::F32) {
        if (numel) put(t.data, numel * 4);
        continue;
      }
      for (size_t i = 0; i < numel; i += 1 << 16) {
        const size_t m = std::min<size_t>(numel - i, 1 << 16);
        half.resize(m);
        for (size_t k = 0; k < m; ++k)
          half[k] = t.dtype == StDtype::F16 ? f32_to_f16(t.data[i + k]) : f32_to_bf16(t.data[i + k]);
        put(half.data(), m * 2);
      }
    }
  });
}

void write_safetensors_dir(const std::string& dir, const std::vector<StTensorOut>& tensors,
                           const std::map<std::string, std::string>& metadata, uint64_t max_shard_bytes) {
  validate_out(dir, tensors);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("write safetensors: cannot create directory '{}': {}", dir, ec.message()));

  // Greedy in the given order: a shard closes when the next tensor would take it past the limit.
  std::vector<std::vector<StTensorOut>> shards(1);
  uint64_t cur = 0, total = 0, params = 0;
  for (auto& t : tensors) {
    const uint64_t b = out_bytes(t);
    if (!shards.back().empty() && cur + b > max_shard_bytes) shards.emplace_back(), cur = 0;
    shards.back().push_back(t);
    cur += b;
    total += b;
    params += b / st_dtype_size(t.dtype);
  }

  const fs::path d(dir), single = d / "model.safetensors", index = d / "model.safetensors.index.json";
  if (shards.size() == 1) {
    write_safetensors(single.string(), tensors, metadata);
    fs::remove(index, ec);  // a stale index from an earlier sharded save must not describe this one
    return;
  }
  json weight_map = json::object();
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, shards.size());
    write_safetensors((d / name).string(), shards[k], metadata);
    for (auto& t : shards[k]) weight_map[t.name] = name;
  }
  // Written like transformers' save_pretrained: sorted keys, indent 2, trailing newline.
  const json idx = {{"metadata", {{"total_size", total}, {"total_parameters", params}}}, {"weight_map", weight_map}};
  const std::string text = idx.dump(2) + "\n";
  write_atomically(index.string(), [&](auto&& put) { put(text.data(), text.size()); });
  fs::remove(single, ec);  // readers prefer model.safetensors: a stale one would shadow the shards
}

}  // namespace strata
