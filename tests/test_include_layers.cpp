// The include direction (docs/design.md, "Layers"): a file under src/ or tools/ may include only
// its own layer and the layers below it. Reads every source file, parses its `#include "x/..."`
// lines and fails on each include that runs up the layers, naming the file, the line and both
// layers. Tests and benchmarks may include anything, so they are not read.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;

namespace {

// The layers, bottom up: the rank of each directory under src/ (and of tools/). A file may include
// a directory of its own rank or lower. kernels/cpu and kernels/cuda are one layer (the twins);
// train and infer are one rank (neither includes the other). A new directory under src/ must be
// added here: the test refuses one it cannot rank.
struct Layer {
  std::string_view dir;
  int rank;
};
constexpr Layer kLayers[] = {
    {"core", 0},   {"kernels", 1}, {"layers", 2}, {"models", 3}, {"train", 4},
    {"infer", 4},  {"interop", 5}, {"load", 6},   {"serve", 7}, {"tools", 8},
};

int rank_of(std::string_view dir) {
  for (const Layer& l : kLayers)
    if (l.dir == dir) return l.rank;
  return -1;
}

// The layer of a path relative to the source root: "src/<dir>/..." -> <dir>, "tools/..." -> tools.
std::string layer_of(const std::string& rel) {
  const fs::path p(rel);
  auto it = p.begin();
  if (it == p.end()) return "";
  const std::string top = it->string();
  if (top == "tools") return "tools";
  if (top != "src" || ++it == p.end()) return "";
  return it->string();
}

// The include lines of `text` (a file at `rel`) that run up the layers, one message each. An
// include whose first directory is not a layer (a header next to the file, a third-party header
// in quotes) is not checked.
std::vector<std::string> violations(const std::string& rel, const std::string& text) {
  std::vector<std::string> out;
  const std::string own = layer_of(rel);
  const int own_rank = rank_of(own);
  if (own_rank < 0) {
    out.push_back(rel + ": its directory '" + own + "' has no rank (add it to kLayers)");
    return out;
  }
  static const std::regex include_re(R"re(^\s*#\s*include\s*"([^"/]+)/[^"]*")re");
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::smatch m;
    if (!std::regex_search(line, m, include_re)) continue;
    const std::string dir = m[1];
    const int r = rank_of(dir);
    if (r > own_rank)
      out.push_back(rel + ":" + std::to_string(n) + ": " + own + " (rank " + std::to_string(own_rank) +
                    ") includes " + dir + " (rank " + std::to_string(r) + "): " + line);
    else if (r == own_rank && dir != own)  // train and infer: siblings, joined only above them (load/)
      out.push_back(rel + ":" + std::to_string(n) + ": " + own + " includes its sibling " + dir +
                    " (both rank " + std::to_string(r) + "; join them in a layer above): " + line);
  }
  return out;
}

fs::path source_root() {
  if (const char* s = std::getenv("STRATA_SOURCE_DIR")) return s;
  return fs::path(__FILE__).parent_path().parent_path();  // tests/ is one below the root
}

bool is_source(const fs::path& p) {
  static const std::string_view exts[] = {".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh"};
  for (auto e : exts)
    if (p.extension() == e) return true;
  return false;
}

}  // namespace

TEST(IncludeLayers, RankTableNamesEveryDirectoryUnderSrc) {
  const fs::path src = source_root() / "src";
  ASSERT_TRUE(fs::is_directory(src)) << src;
  for (const auto& e : fs::directory_iterator(src)) {
    if (!e.is_directory()) continue;
    EXPECT_GE(rank_of(e.path().filename().string()), 0) << e.path() << " has no rank in kLayers";
  }
}

TEST(IncludeLayers, NoIncludeRunsUpTheLayers) {
  const fs::path root = source_root();
  int files = 0;
  std::vector<std::string> bad;
  for (const char* top : {"src", "tools"}) {
    ASSERT_TRUE(fs::is_directory(root / top)) << root / top;
    for (const auto& e : fs::recursive_directory_iterator(root / top)) {
      if (!e.is_regular_file() || !is_source(e.path())) continue;
      std::ifstream f(e.path(), std::ios::binary);
      const std::string text{std::istreambuf_iterator<char>(f), {}};
      for (auto& v : violations(fs::relative(e.path(), root).generic_string(), text)) bad.push_back(v);
      ++files;
    }
  }
  std::printf("  read %d files under src/ and tools/\n", files);
  EXPECT_GT(files, 50);  // the walk found the tree
  std::string all;
  for (auto& v : bad) all += "  " + v + "\n";
  EXPECT_TRUE(bad.empty()) << bad.size() << " include(s) run up the layers:\n" << all;
}

// The checker itself: it flags an include up the layers and passes the ones that are allowed.
TEST(IncludeLayers, FlagsAnIncludeUpTheLayers) {
  const auto bad = violations("src/core/params.cpp", "#include \"core/params.h\"\n\n  #  include \"kernels/dispatch.h\"\n");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_NE(bad[0].find("src/core/params.cpp:3"), std::string::npos) << bad[0];
  EXPECT_NE(bad[0].find("includes kernels"), std::string::npos) << bad[0];
  EXPECT_EQ(violations("src/models/inspect.cpp", "#include \"train/checkpoint.h\"\n").size(), 1u);
  EXPECT_EQ(violations("src/train/trainer.cpp", "#include \"load/model_loader.h\"\n").size(), 1u);
  EXPECT_EQ(violations("src/train/robot_trainer.cpp", "#include \"infer/realtime/interfaces.h\"\n").size(), 1u);
  EXPECT_EQ(violations("src/infer/sampler.cpp", "#include \"train/checkpoint.h\"\n").size(), 1u);
  // Allowed: the own layer, lower ones, the CUDA twins including the CPU twins (one layer), the
  // tools including anything, and headers that are no layer.
  EXPECT_TRUE(violations("src/layers/linear.cpp", "#include \"core/params.h\"\n#include \"kernels/cpu/gemm.h\"\n"
                                                  "#include \"layers/linear.h\"\n")
                  .empty());
  EXPECT_TRUE(violations("src/kernels/cuda/gemm.cu", "#include \"kernels/cpu/gemm.h\"\n").empty());
  EXPECT_TRUE(violations("tools/strata.cpp", "#include \"load/model_loader.h\"\n#include \"inspect.h\"\n"
                                             "#include \"nlohmann/json.hpp\"\n")
                  .empty());
  // A directory with no rank is refused rather than passed.
  EXPECT_EQ(violations("src/newlayer/x.cpp", "").size(), 1u);
}
