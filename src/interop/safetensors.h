#pragma once
// The safetensors format (Hugging Face checkpoints): an 8-byte little-endian header length N, N bytes
// of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then
// the data buffer, which the tensors must cover exactly, without holes or overlaps (offsets count
// from the byte after the header). Reading memory-maps the file; writing is atomic.
// A model directory holds model.safetensors, or shards listed by model.safetensors.index.json.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace strata {

enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
std::string_view st_dtype_name(StDtype);  // "F32" ...
size_t st_dtype_size(StDtype);            // bytes per element

struct StTensorInfo {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data buffer
  int64_t numel() const;
};

struct StHeader {
  std::vector<StTensorInfo> tensors;  // in data order (by begin offset)
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data buffer: 8 + N
};

// Pure parser over the first `size` bytes of a file of `file_size` bytes (the fuzz target calls it).
// Validates everything a reader relies on and throws InputError naming `what` (the path) otherwise:
// header length beyond the file or absurd (> 100 MB), not JSON / not an object / duplicate keys,
// unknown dtype, bad shape, offsets out of range or not matching numel * dtype size, tensors that
// overlap or leave gaps in the data buffer, metadata values that are not strings.
StHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size, const std::string& what);

// One .safetensors file, memory-mapped read-only for its lifetime.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws InputError naming the path and the reason
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<StTensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const StTensorInfo* find(const std::string& name) const;  // nullptr if absent
  // F32/F16/BF16/F64 converted to float; integer and bool tensors are refused (InputError).
  std::vector<float> read_f32(const std::string& name) const;
  std::span<const uint8_t> raw(const std::string& name) const;  // the stored bytes (little-endian)

 private:
  const StTensorInfo& at(const std::string& name) const;  // throws InputError if absent
  std::string path_;
  StHeader header_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in header_.tensors
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
};

// A model directory (model.safetensors, else the shards listed by model.safetensors.index.json's
// "weight_map"), or one .safetensors file.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& dir_or_file);  // index naming a missing shard -> InputError
  std::vector<std::string> names() const;                           // every tensor, sorted
  bool contains(const std::string& name) const;
  const StTensorInfo& info(const std::string& name) const;  // throws InputError naming the tensor if absent
  std::vector<float> read_f32(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;  // the shard holding it (throws if absent)
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::string where_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> shard_of_;  // tensor name -> index into files_
};

// One tensor to write: `data` holds numel floats, stored as `dtype` (F32, F16 or BF16).
struct StTensorOut {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};

// Writes one file atomically (tmp + fsync + rename), tensors in the given order, F16/BF16 rounded to
// nearest even, the header padded with spaces to a multiple of 8 bytes (as the Python library does).
void write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes model-0000K-of-0000N.safetensors shards of at most max_shard_bytes of tensor data each (a
// tensor is never split; a larger one gets a shard of its own) plus model.safetensors.index.json
// {"metadata": {"total_size"}, "weight_map"}; a single shard is written as model.safetensors with no
// index. `metadata` goes into every shard. Removes a stale model.safetensors or index that would
// otherwise shadow what was written.
void write_safetensors_dir(const std::string& dir, const std::vector<StTensorOut>& tensors,
                           const std::map<std::string, std::string>& metadata, uint64_t max_shard_bytes);

}  // namespace strata
