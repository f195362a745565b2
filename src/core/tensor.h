#pragma once
// A Tensor is a typed, strided view of shared storage on a device. Kernels take raw pointers and
// sizes (llm.c style); Tensor is the currency between files, checkpoints and the dispatcher.
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace strata {

using Shape = std::vector<int64_t>;

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  ~Storage();
};

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(Shape shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(Shape shape, DType dtype = DType::f32, Device device = Device::cpu);

  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return int(shape_.size()); }
  int64_t numel() const;
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_contiguous() const;
  bool defined() const { return storage_ != nullptr; }

  template <class T> T* data() const { return reinterpret_cast<T*>(static_cast<char*>(storage_->data) + offset_bytes_); }
  float* f32() const;  // checked: dtype f32 on cpu

  Tensor view(Shape shape) const;            // same storage, new contiguous shape
  Tensor slice(int dim, int64_t begin, int64_t end) const;
  Tensor to(DType dtype) const;              // converting copy (f32 <-> bf16)

  std::string describe() const;  // "f32[2, 3] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_bytes_ = 0;
  Shape shape_, strides_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
};

std::string shape_str(const Shape& s);

}  // namespace strata
