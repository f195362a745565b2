#pragma once
// A 5x7 bitmap font for printable ASCII (the classic HD44780-style glyphs): enough for axis tick
// labels, titles and legends in the sweep plots.
#include <cstdint>

namespace strata {

constexpr int kGlyphWidth = 5, kGlyphHeight = 7;

// Five column bytes for `c`, bit 0 the top row; '?' for characters outside ' '..'~'.
const uint8_t* glyph(char c);

}  // namespace strata
