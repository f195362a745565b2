#include "train/episodes.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/fsync.h"
#include "train/hdf5_util.h"

namespace fs = std::filesystem;

namespace strata {

namespace {

// ---- read ---------------------------------------------------------------------------------------

struct Dims {
  std::vector<hsize_t> d;
  hsize_t rows() const { return d.empty() ? 1 : d[0]; }
};

struct Reader {
  std::string label;  // "episode file 'x.h5'": the start of every message
  H5Obj file;

  [[noreturn]] void fail(const std::string& where, const std::string& why) const {
    throw InputError(fmt::format("{}: {}: {}", label, where, why));
  }

  bool exists(hid_t parent, const std::string& name) const {
    return H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0;
  }

  H5Obj group(hid_t parent, const std::string& name, const std::string& where) const {
    if (!exists(parent, name)) fail(where, "missing group");
    H5Obj g(H5Oopen(parent, name.c_str(), H5P_DEFAULT), H5Oclose);
    if (!g.ok()) fail(where, "cannot open" + hdf5_reason());
    if (H5Iget_type(g.get()) != H5I_GROUP) fail(where, "is not a group");
    return g;
  }

  std::vector<std::string> members(hid_t g, const std::string& where) const {
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) fail(where, "cannot list" + hdf5_reason());
    std::vector<std::string> out;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      if (len < 0) fail(where, "cannot list" + hdf5_reason());
      std::string name(size_t(len), '\0');
      H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), size_t(len) + 1, H5P_DEFAULT);
      out.push_back(name);
    }
    return out;
  }

  H5Obj attr(hid_t obj, const char* name, const std::string& where) const {
    htri_t ex = H5Aexists(obj, name);
    if (ex <= 0) fail(where, fmt::format("missing attribute '{}'{}", name, ex < 0 ? hdf5_reason() : ""));
    H5Obj a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    if (!a.ok()) fail(where, fmt::format("cannot open attribute '{}'{}", name, hdf5_reason()));
    H5Obj space(H5Aget_space(a.get()), H5Sclose);
    if (!space.ok() || H5Sget_simple_extent_npoints(space.get()) != 1) fail(where, fmt::format("attribute '{}' is not a scalar", name));
    return a;
  }

  int64_t int_attr(hid_t obj, const char* name, const std::string& where) const {
    H5Obj a = attr(obj, name, where);
    H5Obj type(H5Aget_type(a.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_INTEGER) fail(where, fmt::format("attribute '{}' is not an integer", name));
    int64_t v = 0;
    if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0) fail(where, fmt::format("cannot read attribute '{}'{}", name, hdf5_reason()));
    return v;
  }

  // Fixed-length (ours) or variable-length (h5py's default for a str attribute) strings.
  std::string string_attr(hid_t obj, const char* name, const std::string& where) const {
    H5Obj a = attr(obj, name, where);
    H5Obj type(H5Aget_type(a.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING) fail(where, fmt::format("attribute '{}' is not a string", name));
    auto unreadable = [&] { fail(where, fmt::format("cannot read attribute '{}'{}", name, hdf5_reason())); };
    if (H5Tis_variable_str(type.get()) > 0) {
      H5Obj mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
      char* s = nullptr;
      if (H5Aread(a.get(), mem.get(), &s) < 0) unreadable();
      std::string out = s ? s : "";
      H5free_memory(s);
      return out;
    }
    size_t size = H5Tget_size(type.get());
    std::string s(size, '\0');
    if (size > 0 && H5Aread(a.get(), type.get(), s.data()) < 0) unreadable();
    s.resize(std::strlen(s.c_str()));
    return s;
  }

  // A numeric dataset as float32 (HDF5 converts float64 and integers), with its shape.
  std::vector<float> floats(hid_t parent, const std::string& name, const std::string& where, Dims& dims) const {
    if (!exists(parent, name)) fail(where, "missing dataset");
    H5Obj ds(H5Oopen(parent, name.c_str(), H5P_DEFAULT), H5Oclose);
    if (!ds.ok()) fail(where, "cannot open" + hdf5_reason());
    if (H5Iget_type(ds.get()) != H5I_DATASET) fail(where, "is not a dataset");
    H5Obj type(H5Dget_type(ds.get()), H5Tclose);
    H5T_class_t cls = type.ok() ? H5Tget_class(type.get()) : H5T_NO_CLASS;
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) fail(where, "is not numeric (float or integer)");
    H5Obj space(H5Dget_space(ds.get()), H5Sclose);
    int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
    if (rank < 0) fail(where, "cannot read its shape" + hdf5_reason());
    dims.d.assign(size_t(rank), 0);
    H5Sget_simple_extent_dims(space.get(), dims.d.data(), nullptr);
    std::vector<float> out(size_t(H5Sget_simple_extent_npoints(space.get())));
    if (!out.empty() && H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
      fail(where, "cannot read (truncated or corrupt)" + hdf5_reason());
    return out;
  }

  // [T, dim] or [T] (dim 1).
  EpisodeArray table(hid_t parent, const std::string& name, const std::string& where, bool finite) const {
    Dims dims;
    EpisodeArray a;
    a.data = floats(parent, name, where, dims);
    if (dims.d.size() != 1 && dims.d.size() != 2)
      fail(where, fmt::format("has rank {}; expected [T, dim] (image observations are not supported)", dims.d.size()));
    a.dim = dims.d.size() == 2 ? int64_t(dims.d[1]) : 1;
    if (a.dim == 0) fail(where, "has dimension 0");
    if (finite) check_finite(a.data, a.dim, where);
    return a;
  }

  void check_finite(const std::vector<float>& v, int64_t dim, const std::string& where) const {
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) {
        size_t count = size_t(std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); }));
        fail(where, fmt::format("holds a non-finite value ({} at step {}, feature {}; {} of {} values)", v[i], int64_t(i) / dim,
                                int64_t(i) % dim, count, v.size()));
      }
  }

  Episode demo(hid_t data, const std::string& name) const {
    const std::string where = "data/" + name;
    H5Obj g = group(data, name, where);
    Episode ep;
    ep.name = name;
    ep.actions = table(g.get(), "actions", where + "/actions", true);
    ep.length = int64_t(ep.actions.data.size()) / ep.actions.dim;
    if (ep.length == 0) fail(where + "/actions", "has 0 steps");
    auto same_length = [&](int64_t T, const std::string& w) {
      if (T != ep.length) fail(w, fmt::format("has {} steps but data/{}/actions has {}", T, name, ep.length));
    };
    EpisodeArray rewards = table(g.get(), "rewards", where + "/rewards", true);
    if (rewards.dim != 1) fail(where + "/rewards", fmt::format("has {} values per step; expected 1", rewards.dim));
    same_length(int64_t(rewards.data.size()), where + "/rewards");
    ep.rewards = std::move(rewards.data);
    EpisodeArray dones = table(g.get(), "dones", where + "/dones", true);
    if (dones.dim != 1) fail(where + "/dones", fmt::format("has {} values per step; expected 1", dones.dim));
    same_length(int64_t(dones.data.size()), where + "/dones");
    for (float d : dones.data) ep.dones.push_back(d != 0 ? 1 : 0);
    H5Obj obs = group(g.get(), "obs", where + "/obs");
    auto keys = members(obs.get(), where + "/obs");
    if (keys.empty()) fail(where + "/obs", "has no observation keys");
    for (auto& k : keys) {
      EpisodeArray a = table(obs.get(), k, where + "/obs/" + k, true);
      same_length(int64_t(a.data.size()) / a.dim, where + "/obs/" + k);
      ep.obs.emplace(k, std::move(a));
    }
    int64_t n = int_attr(g.get(), "num_samples", where);
    if (n != ep.length) fail(where, fmt::format("attribute num_samples is {} but the demo has {} steps", n, ep.length));
    if (H5Aexists(g.get(), "success") > 0) ep.success = int_attr(g.get(), "success", where) != 0;
    return ep;
  }

  // demo_<digits>, by number; -1 for anything else.
  static int64_t demo_number(const std::string& name) {
    if (name.rfind("demo_", 0) != 0 || name.size() == 5 || name.size() > 23) return -1;
    for (size_t i = 5; i < name.size(); ++i)
      if (name[i] < '0' || name[i] > '9') return -1;
    return std::stoll(name.substr(5));
  }

  EpisodeSet run(const std::string& path, const EpisodeExpect& expect) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(fmt::format("episode file '{}': no such file", path));
    if (!fs::is_regular_file(path, ec)) throw InputError(fmt::format("episode file '{}': not a regular file", path));
    if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(fmt::format("episode file '{}': not an HDF5 file", path));
    H5Obj fapl(make_fapl(), H5Pclose);
    file = H5Obj(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
    if (!file.ok()) throw InputError(fmt::format("episode file '{}': cannot be opened as HDF5: truncated or corrupt{}", path, hdf5_reason()));

    H5Obj data = group(file.get(), "data", "data");
    EpisodeSet set;
    if (H5Aexists(data.get(), "env_args") > 0) set.env_args = string_attr(data.get(), "env_args", "data");
    std::vector<std::pair<int64_t, std::string>> demos;
    for (auto& m : members(data.get(), "data"))
      if (int64_t k = demo_number(m); k >= 0) demos.emplace_back(k, m);
    if (demos.empty()) fail("data", "holds no demo_N groups");
    std::sort(demos.begin(), demos.end());
    int64_t total = 0;
    for (auto& [k, name] : demos) {
      set.episodes.push_back(demo(data.get(), name));
      total += set.episodes.back().length;
    }
    if (H5Aexists(data.get(), "total") > 0) {
      int64_t t = int_attr(data.get(), "total", "data");
      if (t != total) fail("data", fmt::format("attribute total is {} but its demos hold {} steps", t, total));
    }

    // Every episode must look like the first; then like what the caller expects.
    const Episode& first = set.episodes.front();
    for (auto& [k, a] : first.obs) {
      set.obs_keys.push_back(k);
      set.obs_dims[k] = a.dim;
    }
    set.action_dim = first.actions.dim;
    auto key_list = [](const std::vector<std::string>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); };
    for (auto& ep : set.episodes) {
      std::vector<std::string> keys;
      for (auto& [k, a] : ep.obs) keys.push_back(k);
      if (keys != set.obs_keys)
        fail("data/" + ep.name + "/obs", fmt::format("has keys {} but data/{}/obs has {}", key_list(keys), first.name, key_list(set.obs_keys)));
      for (auto& [k, a] : ep.obs)
        if (a.dim != set.obs_dims[k])
          fail("data/" + ep.name + "/obs/" + k, fmt::format("has dimension {} but in data/{} it has {}", a.dim, first.name, set.obs_dims[k]));
      if (ep.actions.dim != set.action_dim)
        fail("data/" + ep.name + "/actions", fmt::format("has dimension {} but data/{}/actions has {}", ep.actions.dim, first.name, set.action_dim));
    }
    if (expect.action_dim > 0 && expect.action_dim != set.action_dim)
      fail("data/" + first.name + "/actions", fmt::format("action dimension {}, expected {}", set.action_dim, expect.action_dim));
    if (!expect.obs_keys.empty()) {
      std::vector<std::string> want = expect.obs_keys;
      std::sort(want.begin(), want.end());
      if (want != set.obs_keys)
        fail("data/" + first.name + "/obs", fmt::format("observation keys {}, expected {}", key_list(set.obs_keys), key_list(want)));
    }
    for (auto& [k, d] : expect.obs_dims) {
      auto it = set.obs_dims.find(k);
      if (it == set.obs_dims.end()) fail("data/" + first.name + "/obs/" + k, fmt::format("missing dataset (expected dimension {})", d));
      if (it->second != d) fail("data/" + first.name + "/obs/" + k, fmt::format("dimension {}, expected {}", it->second, d));
    }
    if (file.close() < 0) throw InputError(fmt::format("episode file '{}': error closing it{}", path, hdf5_reason()));
    return set;
  }
};

// ---- write --------------------------------------------------------------------------------------

struct Writer {
  std::string label;  // "writing episode file 'x.h5'": the start of every message

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(fmt::format("{}: {}{}", label, what, hdf5_reason()));
  }
  H5Obj check(hid_t id, herr_t (*close)(hid_t), const std::string& what) const {
    if (id < 0) fail(what);
    return H5Obj(id, close);
  }
  void check(herr_t r, const std::string& what) const {
    if (r < 0) fail(what);
  }

  void int_attr(hid_t obj, const char* name, int64_t v) const {
    H5Obj space = check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
    H5Obj a = check(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    fmt::format("creating attribute '{}'", name));
    check(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), fmt::format("writing attribute '{}'", name));
  }

  void string_attr(hid_t obj, const char* name, const std::string& v) const {
    H5Obj type = check(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
    check(H5Tset_size(type.get(), std::max<size_t>(v.size(), 1)), "H5Tset_size");
    check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
    check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset");
    H5Obj space = check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
    H5Obj a = check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    fmt::format("creating attribute '{}'", name));
    std::string padded = v.empty() ? std::string(1, '\0') : v;
    check(H5Awrite(a.get(), type.get(), padded.data()), fmt::format("writing attribute '{}'", name));
  }

  H5Obj group(hid_t parent, const std::string& name) const {
    return check(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, fmt::format("creating group '{}'", name));
  }

  // dims {T} or {T, dim}; file type f32 (or u8 for dones), from native float / uint8 memory.
  void dataset(hid_t parent, const std::string& name, std::vector<hsize_t> dims, hid_t file_type, hid_t mem_type, const void* data) const {
    H5Obj space = check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose, "H5Screate_simple");
    H5Obj ds = check(H5Dcreate2(parent, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                     fmt::format("creating dataset '{}'", name));
    check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), fmt::format("writing dataset '{}'", name));
  }

  void write(const std::string& tmp, const EpisodeSet& set) const {
    H5Obj fapl = check(make_fapl(), H5Pclose, "H5Pcreate");
    H5Obj file = check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, fmt::format("creating '{}'", tmp));
    H5Obj data = group(file.get(), "data");
    int64_t total = 0;
    for (size_t i = 0; i < set.episodes.size(); ++i) {
      const Episode& ep = set.episodes[i];
      const hsize_t T = hsize_t(ep.length);
      H5Obj g = group(data.get(), fmt::format("demo_{}", i));
      H5Obj obs = group(g.get(), "obs");
      for (auto& [k, a] : ep.obs) dataset(obs.get(), k, {T, hsize_t(a.dim)}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, a.data.data());
      dataset(g.get(), "actions", {T, hsize_t(ep.actions.dim)}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ep.actions.data.data());
      dataset(g.get(), "rewards", {T}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ep.rewards.data());
      dataset(g.get(), "dones", {T}, H5T_STD_U8LE, H5T_NATIVE_UINT8, ep.dones.data());
      int_attr(g.get(), "num_samples", ep.length);
      if (ep.success) int_attr(g.get(), "success", *ep.success ? 1 : 0);
      total += ep.length;
    }
    int_attr(data.get(), "total", total);
    string_attr(data.get(), "env_args", set.env_args);
    data.close();
    check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush");
    check(file.close(), fmt::format("closing '{}'", tmp));
  }
};

void validate(const std::string& path, const EpisodeSet& set) {
  auto bad = [&](const std::string& why) { throw Error(fmt::format("writing episode file '{}': {}", path, why)); };
  if (set.env_args.find('\0') != std::string::npos) bad("env_args contains a NUL byte");
  if (set.episodes.empty()) bad("no episodes");
  const Episode& first = set.episodes.front();
  for (size_t i = 0; i < set.episodes.size(); ++i) {
    const Episode& ep = set.episodes[i];
    auto at = [&](const std::string& what) { return fmt::format("episode {} ('{}'): {}", i, ep.name, what); };
    if (ep.length <= 0) bad(at("has no steps"));
    if (ep.obs.empty()) bad(at("has no observations"));
    auto rows = [&](const EpisodeArray& a, const std::string& what) {
      if (a.dim <= 0 || int64_t(a.data.size()) != ep.length * a.dim)
        bad(at(fmt::format("{} holds {} values, not length {} x dim {}", what, a.data.size(), ep.length, a.dim)));
    };
    rows(ep.actions, "actions");
    for (auto& [k, a] : ep.obs) {
      if (k.empty() || k.find('/') != std::string::npos || k == ".") bad(at(fmt::format("invalid observation key '{}'", k)));
      rows(a, "obs/" + k);
      auto it = first.obs.find(k);
      if (it == first.obs.end() || it->second.dim != a.dim) bad(at(fmt::format("obs/{} does not match episode 0's keys and dims", k)));
    }
    if (ep.obs.size() != first.obs.size()) bad(at("has a different observation key set from episode 0"));
    if (ep.actions.dim != first.actions.dim) bad(at(fmt::format("action dim {} differs from episode 0's {}", ep.actions.dim, first.actions.dim)));
    if (int64_t(ep.rewards.size()) != ep.length) bad(at(fmt::format("{} rewards for {} steps", ep.rewards.size(), ep.length)));
    if (int64_t(ep.dones.size()) != ep.length) bad(at(fmt::format("{} dones for {} steps", ep.dones.size(), ep.length)));
  }
}

void column_stats(const EpisodeArray& a, int64_t T, std::vector<double>& sum, std::vector<double>& sq, ArrayStats& s) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < a.dim; ++j) {
      float v = a.data[size_t(t * a.dim + j)];
      sum[size_t(j)] += v;
      sq[size_t(j)] += double(v) * v;
      s.min[size_t(j)] = std::min(s.min[size_t(j)], v);
      s.max[size_t(j)] = std::max(s.max[size_t(j)], v);
    }
}

}  // namespace

EpisodeSet read_episodes(const std::string& path, const EpisodeExpect& expect) {
  QuietHdf5 quiet;
  return Reader{fmt::format("episode file '{}'", path), {}}.run(path, expect);
}

void write_episodes(const std::string& path, const EpisodeSet& set) {
  validate(path, set);
  QuietHdf5 quiet;
  const std::string context = fmt::format("writing episode file '{}'", path);
  replace_file_atomically(path, context, [&](const std::string& tmp) { Writer{context}.write(tmp, set); });
}

// ---- statistics ---------------------------------------------------------------------------------

void ArrayStats::normalize(const float* x, float* out) const {
  for (size_t j = 0; j < mean.size(); ++j) out[j] = (x[j] - mean[j]) / std[j];
}
void ArrayStats::unnormalize(const float* x, float* out) const {
  for (size_t j = 0; j < mean.size(); ++j) out[j] = x[j] * std[j] + mean[j];
}

NormStats compute_norm_stats(const EpisodeSet& set, const std::vector<int64_t>& episodes, float std_floor) {
  STRATA_CHECK(std_floor > 0 && std::isfinite(std_floor), "std_floor must be positive and finite, got {}", std_floor);
  int64_t N = 0;
  for (int64_t e : episodes) {
    STRATA_CHECK(e >= 0 && e < int64_t(set.episodes.size()), "episode index {} out of range [0, {})", e, set.episodes.size());
    N += set.episodes[size_t(e)].length;
  }
  if (N == 0) throw InputError("normalisation statistics: the train split holds no steps");
  NormStats st;
  st.std_floor = std_floor;
  auto one = [&](auto get, int64_t dim) {
    ArrayStats s;
    s.min.assign(size_t(dim), INFINITY);
    s.max.assign(size_t(dim), -INFINITY);
    std::vector<double> sum(static_cast<size_t>(dim)), sq(static_cast<size_t>(dim));
    for (int64_t e : episodes) {
      const Episode& ep = set.episodes[size_t(e)];
      column_stats(get(ep), ep.length, sum, sq, s);
    }
    for (int64_t j = 0; j < dim; ++j) {
      double m = sum[size_t(j)] / double(N);
      double var = std::max(0.0, sq[size_t(j)] / double(N) - m * m);
      s.mean.push_back(float(m));
      s.std.push_back(std::max(float(std::sqrt(var)), std_floor));
    }
    return s;
  };
  const Episode& first = set.episodes[size_t(episodes.front())];
  for (auto& [k, a] : first.obs) {
    const std::string key = k;
    st.obs[k] = one([&](const Episode& ep) -> const EpisodeArray& { return ep.obs.at(key); }, a.dim);
  }
  st.actions = one([](const Episode& ep) -> const EpisodeArray& { return ep.actions; }, first.actions.dim);
  return st;
}

namespace {
const char* const kStatNames[] = {"mean", "std", "min", "max"};
std::vector<float>* stat_field(ArrayStats& s, int i) { return i == 0 ? &s.mean : i == 1 ? &s.std : i == 2 ? &s.min : &s.max; }
}  // namespace

void save_norm_stats(hid_t group, const NormStats& stats) {
  QuietHdf5 quiet;
  Writer w{"saving normalisation statistics"};
  {
    H5Obj space = w.check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
    H5Obj a = w.check(H5Acreate2(group, "std_floor", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, "creating attribute 'std_floor'");
    w.check(H5Awrite(a.get(), H5T_NATIVE_FLOAT, &stats.std_floor), "writing attribute 'std_floor'");
  }
  auto put = [&](hid_t g, const ArrayStats& s) {
    ArrayStats copy = s;
    for (int i = 0; i < 4; ++i) {
      auto* v = stat_field(copy, i);
      w.dataset(g, kStatNames[i], {hsize_t(v->size())}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v->data());
    }
  };
  H5Obj obs = w.group(group, "obs");
  for (auto& [k, s] : stats.obs) {
    H5Obj g = w.group(obs.get(), k);
    put(g.get(), s);
  }
  H5Obj act = w.group(group, "actions");
  put(act.get(), stats.actions);
}

NormStats load_norm_stats(hid_t group, const std::string& where) {
  QuietHdf5 quiet;
  Reader r{fmt::format("normalisation statistics in {}", where), {}};
  NormStats st;
  {
    H5Obj a = r.attr(group, "std_floor", "the group");
    if (H5Aread(a.get(), H5T_NATIVE_FLOAT, &st.std_floor) < 0) r.fail("the group", "cannot read attribute 'std_floor'" + hdf5_reason());
  }
  auto get = [&](hid_t parent, const std::string& name, const std::string& w) {
    H5Obj g = r.group(parent, name, w);
    ArrayStats s;
    for (int i = 0; i < 4; ++i) {
      Dims dims;
      *stat_field(s, i) = r.floats(g.get(), kStatNames[i], w + "/" + kStatNames[i], dims);
      r.check_finite(*stat_field(s, i), 1, w + "/" + kStatNames[i]);
      if (stat_field(s, i)->size() != s.mean.size()) r.fail(w + "/" + kStatNames[i], "length differs from mean's");
    }
    for (float sd : s.std)
      if (!(sd > 0)) r.fail(w + "/std", "holds a std that is not positive");
    return s;
  };
  H5Obj obs = r.group(group, "obs", "obs");
  for (auto& k : r.members(obs.get(), "obs")) st.obs[k] = get(obs.get(), k, "obs/" + k);
  st.actions = get(group, "actions", "actions");
  return st;
}

// ---- split ----------------------------------------------------------------------------------------

EpisodeSplit split_episodes(int64_t n, float val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0 && val_fraction < 1))
    throw InputError(fmt::format("episode split: val_fraction must be in [0, 1), got {}", val_fraction));
  STRATA_CHECK(n >= 0, "episode split: negative episode count {}", n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[rng.below(uint64_t(i + 1))]);
  int64_t n_val = int64_t(std::llround(double(n) * val_fraction));
  if (val_fraction > 0 && n >= 2) n_val = std::clamp<int64_t>(n_val, 1, n - 1);
  EpisodeSplit s;
  s.val.assign(order.begin(), order.begin() + n_val);
  s.train.assign(order.begin() + n_val, order.end());
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

// ---- windows ------------------------------------------------------------------------------------

EpisodeSampler::EpisodeSampler(const EpisodeSet& set, std::vector<int64_t> episodes, WindowSpec spec, const NormStats* stats)
    : set_(set), episodes_(std::move(episodes)), spec_(spec), stats_(stats) {
  STRATA_CHECK(spec.history >= 1 && spec.horizon >= 1, "window history and horizon must be >= 1, got {} and {}", spec.history, spec.horizon);
  if (episodes_.empty()) throw InputError("episode sampler: no episodes (is the split empty?)");
  for (int64_t e : episodes_) {
    STRATA_CHECK(e >= 0 && e < int64_t(set.episodes.size()), "episode index {} out of range [0, {})", e, set.episodes.size());
    starts_.push_back(total_);
    total_ += set.episodes[size_t(e)].length;
  }
  for (auto& k : set.obs_keys) {
    layout_.push_back({k, obs_dim_, set.obs_dims.at(k)});
    obs_dim_ += set.obs_dims.at(k);
  }
  if (stats) {
    for (auto& sl : layout_) {
      auto it = stats->obs.find(sl.key);
      if (it == stats->obs.end() || int64_t(it->second.mean.size()) != sl.dim)
        throw InputError(fmt::format("episode sampler: the normalisation statistics have no obs key '{}' of dimension {}", sl.key, sl.dim));
    }
    if (int64_t(stats->actions.mean.size()) != set.action_dim)
      throw InputError(fmt::format("episode sampler: the statistics' action dimension {} differs from the episodes' {}",
                                   stats->actions.mean.size(), set.action_dim));
  }
}

void EpisodeSampler::resize(WindowBatch& out, int64_t B) const {
  out.B = B;
  out.obs.resize(size_t(B * spec_.history * obs_dim_));
  out.obs_mask.resize(size_t(B * spec_.history));
  out.actions.resize(size_t(B * spec_.horizon * set_.action_dim));
  out.action_mask.resize(size_t(B * spec_.horizon));
  out.episode.resize(size_t(B));
  out.step.resize(size_t(B));
}

void EpisodeSampler::window(int64_t i, WindowBatch& out, int64_t b) const {
  STRATA_CHECK(i >= 0 && i < total_ && b >= 0 && b < out.B, "window {} (of {}) into row {} (of {})", i, total_, b, out.B);
  size_t slot = size_t(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
  const int64_t e = episodes_[slot], t = i - starts_[slot];
  const Episode& ep = set_.episodes[size_t(e)];
  const int64_t H = spec_.history, K = spec_.horizon, A = set_.action_dim;
  out.episode[size_t(b)] = e;
  out.step[size_t(b)] = t;
  for (int64_t h = 0; h < H; ++h) {
    int64_t s = t - (H - 1) + h;
    out.obs_mask[size_t(b * H + h)] = s >= 0 ? 1.f : 0.f;
    s = std::max<int64_t>(s, 0);
    float* dst = out.obs.data() + (b * H + h) * obs_dim_;
    for (auto& sl : layout_) {
      const float* src = ep.obs.at(sl.key).row(s);
      if (stats_) stats_->obs.at(sl.key).normalize(src, dst + sl.offset);
      else std::copy(src, src + sl.dim, dst + sl.offset);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    int64_t s = t + k;
    out.action_mask[size_t(b * K + k)] = s < ep.length ? 1.f : 0.f;
    s = std::min(s, ep.length - 1);
    const float* src = ep.actions.row(s);
    float* dst = out.actions.data() + (b * K + k) * A;
    if (stats_) stats_->actions.normalize(src, dst);
    else std::copy(src, src + A, dst);
  }
}

void EpisodeSampler::sample(int64_t B, Rng& rng, WindowBatch& out) const {
  resize(out, B);
  for (int64_t b = 0; b < B; ++b) window(int64_t(rng.below(uint64_t(total_))), out, b);
}

}  // namespace strata
