#include "train/plot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "train/plot_font.h"

namespace strata {

namespace {

// Tableau's ten colours (matplotlib's default cycle), so plots look familiar.
constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
                            {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
constexpr Rgb kBlack{0, 0, 0}, kGrid{225, 225, 225}, kAxis{60, 60, 60};

void fill_rect(Image& img, int x0, int y0, int w, int h, Rgb c) {
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x) img.set(x, y, c);
}

// Bresenham, `thick` pixels wide (a square brush).
void line(Image& img, int x0, int y0, int x1, int y1, Rgb c, int thick = 1) {
  int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1, err = dx + dy;
  for (;;) {
    fill_rect(img, x0 - thick / 2, y0 - thick / 2, thick, thick, c);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  return fmt::format("{:.3g}", v);
}

std::string clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 2) + ".."; }

}  // namespace

int text_width(const std::string& s, int scale) { return int(s.size()) * (kGlyphWidth + 1) * scale; }

int draw_text(Image& img, int x, int y, const std::string& s, Rgb c, int scale, bool vertical) {
  int pos = 0;
  for (char ch : s) {
    const uint8_t* g = glyph(ch);
    for (int col = 0; col < kGlyphWidth; ++col)
      for (int row = 0; row < kGlyphHeight; ++row) {
        if (!(g[col] >> row & 1)) continue;
        // Vertical text is the horizontal text turned 90 degrees counter-clockwise about (x, y).
        const int px = pos + col * scale, py = row * scale;
        if (vertical) fill_rect(img, x + py, y - px - scale, scale, scale, c);
        else fill_rect(img, x + px, y + py, scale, scale, c);
      }
    pos += (kGlyphWidth + 1) * scale;
  }
  return pos;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

Image render_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series) {
  Image img(spec.width, spec.height);
  // The data range (log x in decades).
  auto fx = [&](double x) { return spec.log_x ? std::log10(x) : x; };
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const PlotSeries& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (spec.log_x && s.x[i] <= 0)) continue;
      x0 = std::min(x0, fx(s.x[i])), x1 = std::max(x1, fx(s.x[i]));
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (!spec.x_categories.empty()) x0 = -0.5, x1 = double(spec.x_categories.size()) - 0.5;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  const double ypad = (y1 - y0) * 0.05;
  y0 -= ypad, y1 += ypad;
  if (spec.x_categories.empty() && !spec.log_x) {
    const double xpad = spec.markers && !spec.lines ? (x1 - x0) * 0.05 : 0;
    x0 -= xpad, x1 += xpad;
  }

  // The frame: room on the left for tick labels, on the right for the legend.
  const int left = 78, top = 40, bottom = 52;
  int legend_w = 0;
  for (const PlotSeries& s : series) legend_w = std::max(legend_w, text_width(clip(s.label, 34)) + 34);
  const int right = std::min(legend_w + 16, spec.width / 2);
  const int pw = spec.width - left - right, ph = spec.height - top - bottom;
  auto px = [&](double x) { return left + int(std::lround((fx(x) - x0) / (x1 - x0) * pw)); };
  auto pxi = [&](double idx) { return left + int(std::lround((idx - x0) / (x1 - x0) * pw)); };
  auto py = [&](double y) { return top + ph - int(std::lround((y - y0) / (y1 - y0) * ph)); };

  // Grid and tick labels.
  for (double t : nice_ticks(y0, y1)) {
    const int y = py(t);
    line(img, left, y, left + pw, y, kGrid);
    const std::string l = tick_label(t);
    draw_text(img, left - 6 - text_width(l), y - 3, l, kAxis);
  }
  auto x_tick = [&](int x, const std::string& l) {
    line(img, x, top, x, top + ph, kGrid);
    draw_text(img, x - text_width(l) / 2, top + ph + 8, l, kAxis);
  };
  if (!spec.x_categories.empty()) {
    for (size_t i = 0; i < spec.x_categories.size(); ++i) x_tick(pxi(double(i)), clip(spec.x_categories[i], 16));
  } else if (spec.log_x) {
    const bool sparse = x1 - x0 < 1.5;  // under ~1.5 decades: 1, 2, 5 of each decade too
    for (double d = std::floor(x0); d <= std::ceil(x1); ++d)
      for (double m : sparse ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double v = m * std::pow(10.0, d);
        if (std::log10(v) >= x0 - 1e-9 && std::log10(v) <= x1 + 1e-9) x_tick(px(v), tick_label(v));
      }
  } else {
    for (double t : nice_ticks(x0, x1)) x_tick(px(t), tick_label(t));
  }
  line(img, left, top, left, top + ph, kAxis);
  line(img, left, top + ph, left + pw, top + ph, kAxis);
  line(img, left, top, left + pw, top, kAxis);
  line(img, left + pw, top, left + pw, top + ph, kAxis);

  // The series, clipped to the frame.
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const Rgb c = kPalette[k % 10];
    bool have_prev = false;
    int prev_x = 0, prev_y = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (spec.log_x && s.x[i] <= 0)) continue;
      const int x = spec.x_categories.empty() ? px(s.x[i]) : pxi(s.x[i]), y = py(s.y[i]);
      if (spec.lines && have_prev) line(img, prev_x, prev_y, x, y, c, 2);
      if (spec.markers) fill_rect(img, x - 3, y - 3, 7, 7, c);
      prev_x = x, prev_y = y, have_prev = true;
    }
  }

  // Title, axis labels, legend.
  // Centred over the frame; a title wider than the frame starts at the image's left margin instead.
  draw_text(img, std::max(8, left + (pw - text_width(spec.title, 2)) / 2), 10, spec.title, kBlack, 2);
  draw_text(img, left + (pw - text_width(spec.x_label)) / 2, spec.height - 20, spec.x_label, kBlack);
  draw_text(img, 12, top + (ph + text_width(spec.y_label)) / 2, spec.y_label, kBlack, 1, /*vertical=*/true);
  int ly = top + 6;
  for (size_t k = 0; k < series.size() && ly < top + ph - 10; ++k, ly += 14) {
    const int lx = left + pw + 12;
    line(img, lx, ly + 3, lx + 20, ly + 3, kPalette[k % 10], 2);
    draw_text(img, lx + 26, ly, clip(series[k].label, 34), kBlack);
  }
  return img;
}

}  // namespace strata
