#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/device.h"
#include "core/error.h"

namespace strata {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i8: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i8: return "i8";
  }
  return "?";
}

std::string_view device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Storage::~Storage() { device_free(device, data); }

static Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  require_device(device, "Tensor::empty");
  for (auto d : shape) STRATA_CHECK(d >= 0, "Tensor::empty: negative dimension in {}", shape_str(shape));
  Tensor t;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(t.shape_);
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>();
  size_t bytes = size_t(t.numel()) * dtype_size(dtype);
  t.storage_->data = device_alloc(device, bytes);
  t.storage_->device = device;
  t.storage_->bytes = bytes;
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(std::move(shape), dtype, device);
  device_zero(t.device_, t.storage_->data, t.storage_->bytes);
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (auto d : shape_) n *= d;
  return n;
}

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

float* Tensor::f32() const {
  STRATA_CHECK(defined() && dtype_ == DType::f32 && device_ == Device::cpu, "expected an f32 cpu tensor, got {}", describe());
  return data<float>();
}

Tensor Tensor::view(Shape shape) const {
  STRATA_CHECK(is_contiguous(), "view of a non-contiguous tensor {}", describe());
  Tensor t = *this;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(t.shape_);
  STRATA_CHECK(t.numel() == numel(), "view {} does not match {} elements of {}", shape_str(t.shape_), numel(), describe());
  return t;
}

Tensor Tensor::slice(int d, int64_t begin, int64_t end) const {
  STRATA_CHECK(d >= 0 && d < ndim() && 0 <= begin && begin <= end && end <= shape_[d], "slice({}, {}, {}) out of range for {}", d, begin, end, describe());
  Tensor t = *this;
  t.offset_bytes_ += size_t(begin * strides_[d]) * dtype_size(dtype_);
  t.shape_[d] = end - begin;
  return t;
}

Tensor Tensor::to(DType dtype) const {
  STRATA_CHECK(is_contiguous() && device_ == Device::cpu, "to(): needs a contiguous cpu tensor, got {}", describe());
  if (dtype == dtype_) {
    Tensor t = empty(shape_, dtype, device_);
    std::memcpy(t.data<char>(), data<char>(), size_t(numel()) * dtype_size(dtype));
    return t;
  }
  Tensor t = empty(shape_, dtype, device_);
  int64_t n = numel();
  if (dtype_ == DType::f32 && dtype == DType::bf16) {
    for (int64_t i = 0; i < n; ++i) t.data<uint16_t>()[i] = f32_to_bf16(data<float>()[i]);
  } else if (dtype_ == DType::bf16 && dtype == DType::f32) {
    for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = bf16_to_f32(data<uint16_t>()[i]);
  } else {
    STRATA_CHECK(false, "to(): conversion {} -> {} is not supported", dtype_name(dtype_), dtype_name(dtype));
  }
  return t;
}

std::string Tensor::describe() const {
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_str(shape_), device_name(device_));
}

}  // namespace strata
