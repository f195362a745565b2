#include "train/sweep_spec.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "core/rng.h"
#include "train/config_load.h"

namespace fs = std::filesystem;

namespace strata {

namespace {

constexpr const char* kTopKeys = "base, name, dir, overrides, grid, random, points, executor, parallel, slurm";
constexpr const char* kSlurmKeys = "partition, time, cpus_per_task, mem, account, qos, gres, extra, setup";
constexpr const char* kDists = "choice, uniform, log_uniform, int_uniform";

struct Reader {
  std::string src;
  std::string at(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    return m.is_null() ? src : fmt::format("{}:{}", src, m.line + 1);
  }
  std::string scalar(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) throw InputError(fmt::format("{}: {} must be a single value", at(n), what));
    return n.Scalar();
  }
  double number(const YAML::Node& n, const std::string& what) const {
    const std::string s = scalar(n, what);
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v))
      throw InputError(fmt::format("{}: {} must be a finite number, got '{}'", at(n), what, s));
    return v;
  }
  int64_t integer(const YAML::Node& n, const std::string& what, int64_t lo) const {
    double v = number(n, what);
    if (v != std::floor(v) || v < double(lo) || v > 1e15)
      throw InputError(fmt::format("{}: {} must be a whole number >= {}, got '{}'", at(n), what, lo, n.Scalar()));
    return int64_t(v);
  }
  void require_map(const YAML::Node& n, const std::string& what, const std::string& expected) const {
    if (!n.IsMap()) throw InputError(fmt::format("{}: '{}' must be a mapping ({})", at(n), what, expected));
  }
};

// A double in [0, 1) with 53 random bits.
double uniform01(Rng& r) {
  uint64_t hi = r.next_u32() >> 5, lo = r.next_u32() >> 6;  // 27 + 26 bits
  return double(hi * 67108864ull + lo) / 9007199254740992.0;
}

// Drawn values are kept to 4 significant digits: readable in tables and directory listings, and
// still the same for the same seed.
std::string drawn(double v) { return shortest_number(std::stod(fmt::format("{:.4g}", v))); }

struct RandomParam {
  std::string key, where, dist;
  std::vector<std::string> choices;
  double lo = 0, hi = 0;
};

RandomParam random_param(const Reader& rd, const std::string& key, const YAML::Node& spec, const std::string& where) {
  RandomParam p{key, where, "", {}, 0, 0};
  if (!spec.IsMap() || spec.size() != 1)
    throw InputError(fmt::format("{}: random parameter '{}' must be one of {{{}}} (e.g. {{log_uniform: [1e-4, 1e-2]}})", where,
                                 key, kDists));
  p.dist = spec.begin()->first.Scalar();
  const YAML::Node v = spec.begin()->second;
  if (p.dist == "choice") {
    if (!v.IsSequence() || v.size() == 0) throw InputError(fmt::format("{}: '{}': choice needs a non-empty list", where, key));
    for (const auto& c : v) p.choices.push_back(rd.scalar(c, fmt::format("a choice of '{}'", key)));
    return p;
  }
  if (p.dist != "uniform" && p.dist != "log_uniform" && p.dist != "int_uniform")
    throw InputError(fmt::format("{}: '{}': unknown distribution '{}'; valid: {}", where, key, p.dist, kDists));
  if (!v.IsSequence() || v.size() != 2)
    throw InputError(fmt::format("{}: '{}': {} needs [low, high]", where, key, p.dist));
  p.lo = rd.number(v[0], key + " low");
  p.hi = rd.number(v[1], key + " high");
  if (!(p.lo < p.hi)) throw InputError(fmt::format("{}: '{}': {} needs low < high, got [{}, {}]", where, key, p.dist, p.lo, p.hi));
  if (p.dist == "log_uniform" && p.lo <= 0)
    throw InputError(fmt::format("{}: '{}': log_uniform needs low > 0, got {}", where, key, p.lo));
  if (p.dist == "int_uniform" && (p.lo != std::floor(p.lo) || p.hi != std::floor(p.hi)))
    throw InputError(fmt::format("{}: '{}': int_uniform needs whole-number bounds, got [{}, {}]", where, key, p.lo, p.hi));
  return p;
}

std::string draw(const RandomParam& p, Rng& r) {
  if (p.dist == "choice") return p.choices[size_t(r.below(p.choices.size()))];
  if (p.dist == "int_uniform") return std::to_string(int64_t(p.lo) + int64_t(r.below(uint64_t(p.hi - p.lo) + 1)));
  const double u = uniform01(r);
  if (p.dist == "uniform") return drawn(p.lo + (p.hi - p.lo) * u);
  return drawn(std::exp(std::log(p.lo) + (std::log(p.hi) - std::log(p.lo)) * u));
}

void add_key(SweepSpec& s, const std::string& key) {
  if (std::find(s.keys.begin(), s.keys.end(), key) == s.keys.end()) s.keys.push_back(key);
}

void read_slurm(const Reader& rd, const YAML::Node& n, SlurmResources& r) {
  rd.require_map(n, "slurm", kSlurmKeys);
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string k = it->first.Scalar();
    const YAML::Node v = it->second;
    if (k == "partition") r.partition = rd.scalar(v, "slurm.partition");
    else if (k == "time") r.time = rd.scalar(v, "slurm.time");
    else if (k == "mem") r.mem = rd.scalar(v, "slurm.mem");
    else if (k == "account") r.account = rd.scalar(v, "slurm.account");
    else if (k == "qos") r.qos = rd.scalar(v, "slurm.qos");
    else if (k == "gres") r.gres = rd.scalar(v, "slurm.gres");
    else if (k == "setup") r.setup = rd.scalar(v, "slurm.setup");
    else if (k == "cpus_per_task") r.cpus_per_task = int(rd.integer(v, "slurm.cpus_per_task", 1));
    else if (k == "extra") {
      if (!v.IsSequence()) throw InputError(fmt::format("{}: slurm.extra is a list of sbatch options, e.g. [--constraint=avx2]", rd.at(v)));
      for (const auto& e : v) r.extra.push_back(rd.scalar(e, "an slurm.extra option"));
    } else {
      throw InputError(fmt::format("{}: unknown key 'slurm.{}'; valid keys in 'slurm': {}", rd.at(it->first), k, kSlurmKeys));
    }
  }
}

// "key=value" -> SweepValue (the override grammar's prefixes +, ++, ~ stay on the key).
SweepValue split_override(const std::string& o, const std::string& where) {
  size_t eq = o.find('=');
  if (eq == std::string::npos) return {o, "", where};
  return {o.substr(0, eq), o.substr(eq + 1), where};
}

std::string override_text(const SweepValue& v) { return v.value.empty() && v.key[0] == '~' ? v.key : v.key + "=" + v.value; }

// Rewrites config_load's "command-line override 'k=v'" (its name for where a value came from) as
// the sweep file's line, so that the message points at what the user wrote.
std::string relocate(std::string msg, const SweepValue& v) {
  const std::string from = fmt::format("command-line override '{}'", override_text(v));
  if (v.where.rfind("command-line", 0) == 0) return msg;
  size_t pos = msg.find(from);
  if (pos == std::string::npos) return "";
  msg.replace(pos, from.size(), fmt::format("{}: '{}'", v.where, override_text(v)));
  return msg;
}

// The cartesian product of the axes as "grid" points, the first axis slowest; no axes: one empty point.
void append_grid_points(SweepSpec& s, const std::vector<std::vector<SweepValue>>& axes) {
  std::vector<size_t> idx(axes.size(), 0);
  for (bool more = true; more;) {
    SweepPoint p;
    p.source = "grid";
    for (size_t a = 0; a < axes.size(); ++a) p.values.push_back(axes[a][idx[a]]);
    s.points.push_back(std::move(p));
    more = false;
    for (size_t a = axes.size(); a-- > 0;) {
      if (++idx[a] < axes[a].size()) {
        more = true;
        break;
      }
      idx[a] = 0;
    }
  }
}

}  // namespace

std::string shortest_number(double v) { return fmt::format("{}", v); }

SweepSpec parse_sweep(const std::string& yaml_text, const std::string& source_name, const std::string& base_dir) {
  Reader rd{source_name};
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    std::string at = e.mark.is_null() ? source_name : fmt::format("{}:{}:{}", source_name, e.mark.line + 1, e.mark.column + 1);
    throw InputError(fmt::format("{}: YAML syntax error: {} (a value starting with '*' must be quoted, e.g. \"M*\")", at, e.msg));
  }
  if (!root.IsMap()) throw InputError(fmt::format("{}: a sweep file is a mapping of {}", source_name, kTopKeys));
  SweepSpec s;
  s.source = source_name;
  s.name = fs::path(source_name).stem().string();
  std::vector<RandomParam> random;
  int64_t samples = 0;
  uint64_t seed = 0;
  YAML::Node grid, points;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string k = it->first.Scalar();
    const YAML::Node v = it->second;
    const std::string where = rd.at(it->first);
    if (k == "base") {
      std::string b = rd.scalar(v, "base");
      s.base = fs::path(b).is_absolute() || base_dir.empty() ? b : (fs::path(base_dir) / b).lexically_normal().string();
    } else if (k == "name") {
      s.name = rd.scalar(v, "name");
    } else if (k == "dir") {
      s.dir = rd.scalar(v, "dir");
    } else if (k == "executor") {
      s.executor = rd.scalar(v, "executor");
      if (s.executor != "local" && s.executor != "slurm")
        throw InputError(fmt::format("{}: executor '{}'; valid: local, slurm", where, s.executor));
    } else if (k == "parallel") {
      s.parallel = int(rd.integer(v, "parallel", 0));  // 0: no limit
    } else if (k == "slurm") {
      read_slurm(rd, v, s.slurm);
    } else if (k == "overrides") {
      if (v.IsSequence()) {
        for (const auto& o : v) s.overrides.push_back(split_override(rd.scalar(o, "an override"), rd.at(o)));
      } else if (v.IsMap()) {
        for (auto o = v.begin(); o != v.end(); ++o)
          s.overrides.push_back({o->first.Scalar(), rd.scalar(o->second, o->first.Scalar()), rd.at(o->first)});
      } else if (!v.IsNull()) {
        throw InputError(fmt::format("{}: overrides is a list of key=value or a mapping key: value", where));
      }
    } else if (k == "grid") {
      rd.require_map(v, "grid", "key: [values]");
      grid = v;
    } else if (k == "random") {
      rd.require_map(v, "random", "samples, seed, params");
      for (auto r = v.begin(); r != v.end(); ++r) {
        const std::string rk = r->first.Scalar();
        if (rk == "samples") samples = rd.integer(r->second, "random.samples", 1);
        else if (rk == "seed") seed = uint64_t(rd.integer(r->second, "random.seed", 0));
        else if (rk == "params") {
          rd.require_map(r->second, "random.params", "key: {distribution: ...}");
          for (auto p = r->second.begin(); p != r->second.end(); ++p)
            random.push_back(random_param(rd, p->first.Scalar(), p->second, rd.at(p->first)));
        } else {
          throw InputError(fmt::format("{}: unknown key 'random.{}'; valid keys in 'random': samples, seed, params", rd.at(r->first), rk));
        }
      }
      if (samples == 0 || random.empty())
        throw InputError(fmt::format("{}: random needs samples (>= 1) and params", where));
    } else if (k == "points") {
      if (!v.IsSequence()) throw InputError(fmt::format("{}: points is a list of mappings key: value", where));
      points = v;
    } else {
      throw InputError(fmt::format("{}: unknown key '{}'; valid top-level keys: {}", where, k, kTopKeys));
    }
  }
  if (s.base.empty()) throw InputError(fmt::format("{}: no 'base' (the config every point starts from)", source_name));

  // grid: the cartesian product, the first key slowest.
  if (grid) {
    std::vector<std::vector<SweepValue>> axes;
    for (auto g = grid.begin(); g != grid.end(); ++g) {
      const std::string key = g->first.Scalar(), where = rd.at(g->first);
      std::vector<SweepValue> axis;
      // A copy: `g->second` is a member of a proxy that dies with its full expression, so a range-for
      // over it would walk a dangling node (AddressSanitizer: stack-use-after-scope).
      const YAML::Node values = g->second;
      if (values.IsSequence()) {
        for (const auto& x : values) axis.push_back({key, rd.scalar(x, "a value of '" + key + "'"), where});
      } else {
        axis.push_back({key, rd.scalar(values, key), where});
      }
      if (axis.empty()) throw InputError(fmt::format("{}: grid key '{}' has no values", where, key));
      add_key(s, key);
      axes.push_back(std::move(axis));
    }
    if (!axes.empty()) append_grid_points(s, axes);
  }
  // random: `samples` draws from one stream seeded by random.seed, parameters in file order.
  for (const RandomParam& p : random) {
    if (std::find(s.keys.begin(), s.keys.end(), p.key) != s.keys.end())
      throw InputError(fmt::format("{}: '{}' is swept by grid and random both; sweep it in one place", p.where, p.key));
    add_key(s, p.key);
  }
  Rng rng(seed);
  for (int64_t n = 0; n < samples; ++n) {
    SweepPoint pt;
    pt.source = "random";
    for (const RandomParam& p : random) pt.values.push_back({p.key, draw(p, rng), p.where});
    s.points.push_back(std::move(pt));
  }
  if (points) {
    for (const auto& m : points) {
      if (!m.IsMap()) throw InputError(fmt::format("{}: each point is a mapping key: value", rd.at(m)));
      SweepPoint pt;
      pt.source = "points";
      for (auto e = m.begin(); e != m.end(); ++e) {
        const std::string key = e->first.Scalar();
        add_key(s, key);
        pt.values.push_back({key, rd.scalar(e->second, key), rd.at(e->first)});
      }
      s.points.push_back(std::move(pt));
    }
  }
  if (s.points.empty()) throw InputError(fmt::format("{}: no points: give grid, random or points", source_name));
  for (const SweepValue& o : s.overrides)
    if (std::find(s.keys.begin(), s.keys.end(), o.key) != s.keys.end())
      throw InputError(fmt::format("{}: '{}' is both a fixed override and swept", o.where, o.key));
  return s;
}

SweepSpec load_sweep(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw InputError(fmt::format("sweep file '{}' not found", path));
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_sweep(ss.str(), path, fs::path(path).parent_path().string());
}

SweepSpec multirun_sweep(const std::string& config_path, const std::vector<std::string>& overrides) {
  SweepSpec s;
  s.name = fs::path(config_path).stem().string();
  s.base = config_path;
  std::vector<std::vector<SweepValue>> axes;
  for (const std::string& o : overrides) {
    const std::string where = fmt::format("command-line override '{}'", o);
    SweepValue v = split_override(o, where);
    if (v.value.find(',') == std::string::npos) {
      s.overrides.push_back(v);
      continue;
    }
    std::vector<SweepValue> axis;
    std::stringstream in(v.value);
    for (std::string x; std::getline(in, x, ',');) {
      if (x.empty()) throw InputError(fmt::format("{}: an empty value in the list '{}'", where, v.value));
      axis.push_back({v.key, x, fmt::format("command-line override '{}={}'", v.key, x)});
    }
    add_key(s, v.key);
    axes.push_back(std::move(axis));
  }
  // No comma list: one point, as Hydra's multirun does without a sweep.
  append_grid_points(s, axes);
  return s;
}

void check_sweep(const SweepSpec& spec) {
  std::error_code ec;
  if (!fs::is_regular_file(spec.base, ec))
    throw InputError(fmt::format("{}: base config '{}' not found", spec.source.empty() ? "train -m" : spec.source, spec.base));
  std::ifstream f(spec.base, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  auto load = [&](const std::vector<SweepValue>& vals, const std::string& what) {
    std::vector<std::string> ovs;
    for (const SweepValue& v : vals) ovs.push_back(override_text(v));
    try {
      parse_config(text, spec.base, ovs);
    } catch (const InputError& e) {
      // Name the override's line in the sweep file when the message is about one of them.
      for (const SweepValue& v : vals)
        if (std::string m = relocate(e.what(), v); !m.empty()) throw InputError(m + (what.empty() ? "" : " (" + what + ")"));
      throw InputError(fmt::format("{}: base config with {}: {}", spec.source.empty() ? "train -m" : spec.source,
                                   what.empty() ? "the fixed overrides" : what, e.what()));
    }
  };
  load(spec.overrides, "");
  for (size_t i = 0; i < spec.points.size(); ++i) {
    std::vector<SweepValue> all = spec.overrides;
    all.insert(all.end(), spec.points[i].values.begin(), spec.points[i].values.end());
    std::string desc;
    for (const SweepValue& v : spec.points[i].values) desc += (desc.empty() ? "" : " ") + override_text(v);
    load(all, fmt::format("point {} of {}: {}", i, spec.points.size(), desc));
  }
}

std::vector<std::string> point_overrides(const SweepSpec& spec, size_t i) {
  std::vector<std::string> out;
  for (const SweepValue& v : spec.overrides) out.push_back(override_text(v));
  for (const SweepValue& v : spec.points.at(i).values) out.push_back(override_text(v));
  return out;
}

}  // namespace strata
