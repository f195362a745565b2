#pragma once
// Line and scatter plots drawn into an Image (train/png.h): axes with "nice" tick labels (linear or
// log x), overlaid series in a fixed palette, a legend, a title. Small and plain, for the sweep
// results (loss curves, final loss against each swept value); not a plotting library.
#include <string>
#include <vector>

#include "train/png.h"

namespace strata {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // non-finite points are skipped
};

struct PlotSpec {
  std::string title, x_label, y_label;
  bool log_x = false;
  bool lines = true, markers = false;
  // Categorical x: x values are indices into these names, drawn as the tick labels.
  std::vector<std::string> x_categories;
  int width = 900, height = 540;
};

Image render_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series);

// Text in the built-in 5x7 font at (x, y) (the top left), `scale` pixels per font pixel; vertical
// runs bottom to top. Returns the width drawn.
int draw_text(Image& img, int x, int y, const std::string& s, Rgb c, int scale = 1, bool vertical = false);
int text_width(const std::string& s, int scale = 1);

// Tick positions for [lo, hi]: multiples of 1, 2 or 5 x 10^k, about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace strata
