#pragma once
// cub::DeviceRadixSort on the CPU emulator: cub's two-call protocol (a null temp pointer asks for the
// temp size), a stable LSD radix sort by key bits [begin_bit, end_bit) with cub's key twiddling (signed
// integers and floats order as numbers), queued on the stream like a kernel. The temp storage is
// really used (it holds the ping-pong buffers), so a too-small or shared buffer shows.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <strata_emulator/memory_check.h>
#include <strata_emulator/runtime_api.h>

namespace cub {
namespace strata_detail {

// The unsigned bits cub sorts by: signed integers with the sign bit flipped, floats with every bit
// flipped when negative and the sign bit flipped otherwise.
template <class K>
auto twiddle(K k) {
  using U = std::conditional_t<sizeof(K) == 1, uint8_t,
                               std::conditional_t<sizeof(K) == 2, uint16_t,
                                                  std::conditional_t<sizeof(K) == 4, uint32_t, uint64_t>>>;
  U u;
  std::memcpy(&u, &k, sizeof(K));
  constexpr U high = U(U(1) << (8 * sizeof(K) - 1));
  if constexpr (std::is_floating_point_v<K>) {
    u = (u & high) ? U(~u) : U(u ^ high);
  } else if constexpr (std::is_signed_v<K>) {
    u ^= high;
  }
  return u;
}

inline size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

}  // namespace strata_detail

struct DeviceRadixSort {
  template <class KeyT, class ValueT, class NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                               KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out, NumItemsT num_items,
                               int begin_bit = 0, int end_bit = int(sizeof(KeyT) * 8), cudaStream_t stream = 0) {
    using namespace strata_detail;
    const size_t n = num_items > 0 ? size_t(num_items) : 0;
    // Ping-pong buffers for keys and values, and a small header the sort writes first.
    const size_t keys_bytes = align_up(n * sizeof(KeyT)), vals_bytes = align_up(n * sizeof(ValueT));
    const size_t need = 256 + keys_bytes + vals_bytes;
    if (!d_temp_storage) {
      temp_storage_bytes = need;
      return cudaSuccess;
    }
    if (temp_storage_bytes < need || begin_bit < 0 || end_bit > int(sizeof(KeyT) * 8) || begin_bit > end_bit)
      return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    char* temp = static_cast<char*>(d_temp_storage);
    strata_emu::enqueue(stream, "cub::DeviceRadixSort::SortPairs", [=] {
      strata_emu::require_device_range("SortPairs temp storage", temp, need);
      strata_emu::require_device_range("SortPairs keys_in", d_keys_in, n * sizeof(KeyT));
      strata_emu::require_device_range("SortPairs keys_out", d_keys_out, n * sizeof(KeyT));
      strata_emu::require_device_range("SortPairs values_in", d_values_in, n * sizeof(ValueT));
      strata_emu::require_device_range("SortPairs values_out", d_values_out, n * sizeof(ValueT));
      std::memset(temp, 0, 256);
      KeyT* tk = reinterpret_cast<KeyT*>(temp + 256);
      ValueT* tv = reinterpret_cast<ValueT*>(temp + 256 + keys_bytes);
      // Passes of 8 bits alternate between the output and the temp buffers; the input is only read.
      const KeyT* sk = d_keys_in;
      const ValueT* sv = d_values_in;
      const int passes = (end_bit - begin_bit + 7) / 8;
      KeyT* dk = (passes % 2 == 1) ? d_keys_out : tk;
      ValueT* dv = (passes % 2 == 1) ? d_values_out : tv;
      if (passes == 0) {
        std::memmove(d_keys_out, d_keys_in, n * sizeof(KeyT));
        std::memmove(d_values_out, d_values_in, n * sizeof(ValueT));
        return;
      }
      for (int pass = 0; pass < passes; ++pass) {
        const int shift = begin_bit + 8 * pass;
        const int bits = end_bit - shift < 8 ? end_bit - shift : 8;
        const uint64_t mask = (uint64_t(1) << bits) - 1;
        size_t count[257] = {};
        for (size_t i = 0; i < n; ++i) ++count[((uint64_t(twiddle(sk[i])) >> shift) & mask) + 1];
        for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
        for (size_t i = 0; i < n; ++i) {  // stable: equal digits keep their order
          const size_t at = count[(uint64_t(twiddle(sk[i])) >> shift) & mask]++;
          dk[at] = sk[i];
          dv[at] = sv[i];
        }
        sk = dk, sv = dv;
        const bool to_out = dk == d_keys_out;
        dk = to_out ? tk : d_keys_out;
        dv = to_out ? tv : d_values_out;
      }
    });
    return cudaPeekAtLastError();  // as cub does after its launches
  }
};

}  // namespace cub
