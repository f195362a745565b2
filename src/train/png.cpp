#include "train/png.h"

#include <zlib.h>

#include <fstream>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fsync.h"

namespace strata {

namespace {

void put_u32be(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(char(uint8_t(v >> s)));
}

void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32be(out, uint32_t(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  put_u32be(out, uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
}

}  // namespace

Image::Image(int w, int h, Rgb fill) : width(w), height(h), rgb(size_t(w) * size_t(h) * 3) {
  for (size_t i = 0; i < rgb.size(); i += 3) rgb[i] = fill.r, rgb[i + 1] = fill.g, rgb[i + 2] = fill.b;
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  uint8_t* p = &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

Rgb Image::get(int x, int y) const {
  const uint8_t* p = &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3];
  return {p[0], p[1], p[2]};
}

std::string encode_png(const Image& img) {
  if (img.width <= 0 || img.height <= 0) throw Error(fmt::format("PNG: bad size {}x{}", img.width, img.height));
  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32be(ihdr, uint32_t(img.width));
  put_u32be(ihdr, uint32_t(img.height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
  put_chunk(out, "IHDR", ihdr);
  // Each scanline: filter byte 0 (None), then the row.
  const size_t row = size_t(img.width) * 3;
  std::string raw;
  raw.reserve((row + 1) * size_t(img.height));
  for (int y = 0; y < img.height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(&img.rgb[size_t(y) * row]), row);
  }
  uLongf n = compressBound(uLong(raw.size()));
  std::string z(n, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(raw.data()), uLong(raw.size()), 6) != Z_OK)
    throw Error("PNG: zlib compress2 failed");
  z.resize(n);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

void write_png(const std::string& path, const Image& img) {
  const std::string bytes = encode_png(img);
  replace_file_atomically(path, "PNG", [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    if (!f.flush()) throw Error(fmt::format("PNG: cannot write '{}'", tmp));
  });
}

}  // namespace strata
