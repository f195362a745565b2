// libFuzzer target for the safetensors header parser: any input is a whole file. The parser must
// either throw strata::Error or return a header whose tensors tile the data buffer exactly; every
// byte it points at is touched so AddressSanitizer sees an out-of-range offset.
// Built by -DSTRATA_FUZZ=ON with Clang (fuzz/run.sh); tests/test_safetensors.cpp replays the seed
// corpus through this same function without libFuzzer.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "interop/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const strata::StHeader h = strata::parse_safetensors_header(data, size, size, "fuzz-input");
    uint64_t pos = 0;
    volatile uint8_t sink = 0;
    for (const auto& t : h.tensors) {
      if (t.begin != pos || t.end < t.begin) __builtin_trap();  // must tile the buffer in order
      if (uint64_t(t.numel()) * strata::st_dtype_size(t.dtype) != t.end - t.begin) __builtin_trap();
      for (uint64_t i = h.data_start + t.begin; i < h.data_start + t.end; ++i) sink = sink ^ data[i];
      pos = t.end;
    }
    if (h.data_start + pos != size) __builtin_trap();
  } catch (const strata::Error&) {
    // Refusing bad input is the expected outcome.
  }
  return 0;
}
