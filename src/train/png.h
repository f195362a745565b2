#pragma once
// A minimal PNG writer (RFC 2083 / ISO 15948): 8-bit RGB, no interlace, filter type 0 on every
// row, the image data deflated by zlib. Enough for the sweep plots; no plotting library needed.
//   file: 89 50 4E 47 0D 0A 1A 0A | IHDR | IDAT | IEND
//   chunk: u32 length (big-endian) | 4-byte type | data | u32 CRC-32 of type + data
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // row-major, 3 bytes a pixel
  Image(int w, int h, Rgb fill = {255, 255, 255});
  void set(int x, int y, Rgb c);  // ignores pixels outside the image
  Rgb get(int x, int y) const;
};

std::string encode_png(const Image& img);
void write_png(const std::string& path, const Image& img);  // atomically (core/fsync.h)

}  // namespace strata
