#include "train/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <type_traits>

#include "core/error.h"
#include "core/fsync.h"
#include "core/version.h"
#include "train/crc32c.h"
#include "train/hdf5_util.h"


namespace fs = std::filesystem;

namespace strata {

namespace {

// ---- save --------------------------------------------------------------------------------------

struct Saver {
  const std::string& path;  // the final path, for messages

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(fmt::format("saving checkpoint '{}': {}{}", path, what, hdf5_reason()));
  }
  void check(herr_t r, const std::string& what) const {
    if (r < 0) fail(what);
  }
  H5Obj check(hid_t id, herr_t (*close)(hid_t), const std::string& what) const {
    if (id < 0) fail(what);
    return H5Obj(id, close);
  }

  template <class T> void int_attr(hid_t obj, const char* name, T v) const {
    H5Obj space = check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
    H5Obj a = check(H5Acreate2(obj, name, IntType<T>::file(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    fmt::format("creating attribute '{}'", name));
    check(H5Awrite(a.get(), IntType<T>::mem(), &v), fmt::format("writing attribute '{}'", name));
  }

  // Fixed-length, not variable-length: vlen strings live in HDF5's global heap, which has no
  // checksum, and a corrupt global heap can make HDF5 loop forever on read. A fixed-length value is
  // stored in the attribute message itself (checksummed object header, or the checksummed dense
  // attribute heap when large). h5py reads it as bytes.
  void string_attr(hid_t obj, const char* name, const std::string& v) const {
    H5Obj type = check(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
    check(H5Tset_size(type.get(), std::max<size_t>(v.size(), 1)), "H5Tset_size");  // size 0 is invalid
    check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
    check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset");
    H5Obj space = check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
    H5Obj a = check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                    fmt::format("creating attribute '{}'", name));
    std::string padded = v.empty() ? std::string(1, '\0') : v;
    check(H5Awrite(a.get(), type.get(), padded.data()), fmt::format("writing attribute '{}'", name));
  }

  // Groups remember creation order so that a load returns the tensors in the order they were saved.
  H5Obj ordered_group(hid_t parent, const char* name) const {
    H5Obj gcpl = check(H5Pcreate(H5P_GROUP_CREATE), H5Pclose, "H5Pcreate");
    check(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), "creation order");
    return check(H5Gcreate2(parent, name, H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose,
                 fmt::format("creating group '{}'", name));
  }

  void dataset(hid_t group, const std::string& gpath, const ArrayView& a) const {
    std::vector<hsize_t> dims(a.shape.begin(), a.shape.end());
    int64_t n = 1;
    for (auto d : a.shape) n *= d;
    H5Obj space = a.shape.empty() ? check(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate")
                                  : check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose, "H5Screate_simple");
    std::string where = gpath + "/" + a.name;
    H5Obj ds = check(H5Dcreate2(group, a.name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     H5Dclose, fmt::format("creating dataset '{}'", where));
    if (n > 0) check(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data), fmt::format("writing dataset '{}'", where));
    int_attr<uint32_t>(ds.get(), "crc32c", crc32c(a.data, size_t(n) * sizeof(float)));
  }

  // A 1-D uint8 dataset (quantised weights) with the crc32c of its bytes.
  void bytes_dataset(hid_t group, const std::string& gpath, const char* name, const std::vector<uint8_t>& v) const {
    const hsize_t dims[1] = {hsize_t(v.size())};
    H5Obj space = check(H5Screate_simple(1, dims, nullptr), H5Sclose, "H5Screate_simple");
    const std::string where = gpath + "/" + name;
    H5Obj ds = check(H5Dcreate2(group, name, H5T_STD_U8LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                     fmt::format("creating dataset '{}'", where));
    if (!v.empty())
      check(H5Dwrite(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), fmt::format("writing dataset '{}'", where));
    int_attr<uint32_t>(ds.get(), "crc32c", crc32c(v.data(), v.size()));
  }

  void group_of(hid_t parent, const char* name, const std::string& gpath, const std::vector<ArrayView>& arrays) const {
    H5Obj g = ordered_group(parent, name);
    for (auto& a : arrays) dataset(g.get(), gpath, a);
  }

  // Writes the whole file at `tmp` and closes it; durability (fsync) is the caller's.
  void write(const std::string& tmp, const CheckpointView& ck) const {
    H5Obj fapl = check(make_fapl(), H5Pclose, "H5Pcreate");
    H5Obj file = check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose,
                       fmt::format("creating '{}'", tmp));
    hid_t root = file.get();
    const bool quantised = ck.quant && !ck.quant->empty();
    int_attr<int64_t>(root, "format_version", quantised ? kQuantCheckpointFormatVersion : kCheckpointFormatVersion);
    string_attr(root, "strata_version", strata_version());
    string_attr(root, "git_commit", strata_git_commit());
    string_attr(root, "config", ck.config_yaml);
    // The string lives in HDF5's global heap, which has no checksum of its own.
    int_attr<uint32_t>(root, "config_crc32c", crc32c(ck.config_yaml.data(), ck.config_yaml.size()));
    for (auto [name, text] : {std::pair{"tokenizer_json", &ck.tokenizer_json}, std::pair{"hf_config_json", &ck.hf_config_json},
                              std::pair{"tokenizer_config_json", &ck.tokenizer_config_json}}) {
      if (text->empty()) continue;
      string_attr(root, name, *text);
      int_attr<uint32_t>(root, (std::string(name) + "_crc32c").c_str(), crc32c(text->data(), text->size()));
    }
    group_of(root, "params", "/params", ck.params);
    {
      H5Obj optim = check(H5Gcreate2(root, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "creating group 'optim'");
      group_of(optim.get(), "m", "/optim/m", ck.adam_m);
      group_of(optim.get(), "v", "/optim/v", ck.adam_v);
    }
    {
      H5Obj state = check(H5Gcreate2(root, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "creating group 'state'");
      visit_fields(ck.state, [&](const char* name, auto v) { int_attr(state.get(), name, v); });
    }
    if (quantised) {
      H5Obj qg = ordered_group(root, "quant");
      for (const QuantTensor& t : *ck.quant) {
        H5Obj g = ordered_group(qg.get(), t.name.c_str());
        int_attr<int64_t>(g.get(), "bits", t.bits);
        int_attr<int64_t>(g.get(), "rows", t.N);
        int_attr<int64_t>(g.get(), "cols", t.K);
        const std::string gpath = "/quant/" + t.name;
        bytes_dataset(g.get(), gpath, "q", t.q);
        dataset(g.get(), gpath, {"scales", {int64_t(t.scales.size())}, t.scales.data()});
      }
    }
    if (ck.norm_stats) {
      H5Obj ns = check(H5Gcreate2(root, "norm_stats", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                       "creating group 'norm_stats'");
      save_norm_stats(ns.get(), *ck.norm_stats);
    }
    check(H5Fflush(root, H5F_SCOPE_GLOBAL), "H5Fflush");
    // Closing writes the final superblock/EOF; an error here means the file is incomplete.
    check(file.close(), fmt::format("closing '{}'", tmp));
  }
};

void validate(const std::string& path, const CheckpointView& ck) {
  auto bad = [&](const std::string& why) { throw Error(fmt::format("saving checkpoint '{}': {}", path, why)); };
  if (ck.config_yaml.find('\0') != std::string::npos) bad("the config text contains a NUL byte");
  if (ck.tokenizer_json.find('\0') != std::string::npos) bad("the tokenizer JSON contains a NUL byte");
  if (ck.hf_config_json.find('\0') != std::string::npos) bad("the Hugging Face config JSON contains a NUL byte");
  if (ck.tokenizer_config_json.find('\0') != std::string::npos) bad("the tokenizer_config JSON contains a NUL byte");
  std::set<std::string> seen;
  for (auto& a : ck.params) {
    if (a.name.empty() || a.name == "." || a.name.find('/') != std::string::npos)
      bad(fmt::format("invalid tensor name '{}' (must be non-empty and contain no '/')", a.name));
    if (!seen.insert(a.name).second) bad(fmt::format("duplicate tensor name '{}'", a.name));
    int64_t n = 1;
    for (auto d : a.shape) {
      if (d < 0) bad(fmt::format("tensor '{}' has negative shape {}", a.name, shape_str(a.shape)));
      n *= d;
    }
    if (n > 0 && !a.data) bad(fmt::format("tensor '{}' has no data", a.name));
  }
  if (ck.quant)
    for (const QuantTensor& t : *ck.quant) {
      if (t.name.empty() || t.name == "." || t.name.find('/') != std::string::npos)
        bad(fmt::format("invalid quantised tensor name '{}' (must be non-empty and contain no '/')", t.name));
      if (!seen.insert(t.name).second) bad(fmt::format("tensor '{}' is both in /params and quantised, or quantised twice", t.name));
      if ((t.bits != 8 && t.bits != 4) || t.N < 0 || t.K < 0 || (t.bits == 4 && t.K % kQuantGroup != 0) ||
          int64_t(t.q.size()) != quant_bytes(t.bits, t.N, t.K) || int64_t(t.scales.size()) != quant_scales(t.bits, t.N, t.K))
        bad(fmt::format("quantised tensor '{}' (int{} [{}, {}], {} bytes, {} scales) does not follow the format", t.name,
                        t.bits, t.N, t.K, t.q.size(), t.scales.size()));
    }
  for (auto* opt : {&ck.adam_m, &ck.adam_v}) {
    if (opt->empty()) continue;  // a weights-only checkpoint
    if (opt->size() != ck.params.size()) bad(fmt::format("optimizer state has {} tensors, params {}", opt->size(), ck.params.size()));
    for (size_t i = 0; i < opt->size(); ++i) {
      auto& o = (*opt)[i];
      if (o.name != ck.params[i].name || o.shape != ck.params[i].shape)
        bad(fmt::format("optimizer tensor {} ('{}' {}) does not mirror param '{}' {}", i, o.name, shape_str(o.shape),
                        ck.params[i].name, shape_str(ck.params[i].shape)));
      int64_t n = 1;
      for (auto d : o.shape) n *= d;
      if (n > 0 && !o.data) bad(fmt::format("optimizer tensor '{}' has no data", o.name));
    }
  }
}

// ---- load --------------------------------------------------------------------------------------

struct Loader {
  const std::string& path;
  bool keep;                   // false: verify only, one dataset in memory at a time
  std::vector<float> scratch;  // reused across datasets when !keep
  H5Obj file;

  [[noreturn]] void fail(const std::string& why) const {
    throw InputError(fmt::format("checkpoint '{}': {}", path, why));
  }

  H5Obj open_attr(hid_t obj, const char* name, const std::string& where) const {
    htri_t exists = H5Aexists(obj, name);
    if (exists <= 0) fail(fmt::format("missing attribute '{}' on {}{}", name, where, exists < 0 ? hdf5_reason() : ""));
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) fail(fmt::format("cannot open attribute '{}' on {}{}", name, where, hdf5_reason()));
    H5Obj attr(a, H5Aclose);
    H5Obj space(H5Aget_space(a), H5Sclose);
    if (!space.ok() || H5Sget_simple_extent_npoints(space.get()) != 1) fail(fmt::format("attribute '{}' on {} is not a scalar", name, where));
    return attr;
  }

  template <class T> T int_attr(hid_t obj, const char* name, const std::string& where) const {
    H5Obj a = open_attr(obj, name, where);
    H5Obj type(H5Aget_type(a.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_INTEGER) fail(fmt::format("attribute '{}' on {} is not an integer", name, where));
    T v{};
    if (H5Aread(a.get(), IntType<T>::mem(), &v) < 0) fail(fmt::format("cannot read attribute '{}' on {}{}", name, where, hdf5_reason()));
    return v;
  }

  std::string string_attr(hid_t obj, const char* name, const std::string& where) const {
    H5Obj a = open_attr(obj, name, where);
    H5Obj type(H5Aget_type(a.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING) fail(fmt::format("attribute '{}' on {} is not a string", name, where));
    auto unreadable = [&] { fail(fmt::format("cannot read attribute '{}' on {}{}", name, where, hdf5_reason())); };
    // Only fixed-length strings: see Saver::string_attr for why variable-length ones are not read.
    if (H5Tis_variable_str(type.get()) != 0) fail(fmt::format("attribute '{}' on {} is a variable-length string", name, where));
    size_t size = H5Tget_size(type.get());
    std::string s(size, '\0');
    if (size > 0 && H5Aread(a.get(), type.get(), s.data()) < 0) unreadable();
    s.resize(std::strlen(s.c_str()));
    return s;
  }

  // Reads every dataset of a group in creation order (name order for files written by other tools).
  std::vector<NamedArray> group(const std::string& gpath) {
    if (H5Lexists(file.get(), gpath.c_str(), H5P_DEFAULT) <= 0) fail(fmt::format("missing group '{}'", gpath));
    H5Obj g(H5Gopen2(file.get(), gpath.c_str(), H5P_DEFAULT), H5Gclose);
    if (!g.ok()) fail(fmt::format("cannot open group '{}'{}", gpath, hdf5_reason()));
    H5G_info_t info;
    if (H5Gget_info(g.get(), &info) < 0) fail(fmt::format("cannot read group '{}'{}", gpath, hdf5_reason()));
    H5_index_t index = H5_INDEX_NAME;
    {
      H5Obj gcpl(H5Gget_create_plist(g.get()), H5Pclose);
      unsigned flags = 0;
      if (gcpl.ok() && H5Pget_link_creation_order(gcpl.get(), &flags) >= 0 && (flags & H5P_CRT_ORDER_INDEXED)) index = H5_INDEX_CRT_ORDER;
    }
    std::vector<NamedArray> out;
    out.reserve(size_t(info.nlinks));
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      ssize_t len = H5Lget_name_by_idx(g.get(), ".", index, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      if (len < 0) fail(fmt::format("cannot list group '{}'{}", gpath, hdf5_reason()));
      std::string name(size_t(len), '\0');
      H5Lget_name_by_idx(g.get(), ".", index, H5_ITER_INC, i, name.data(), size_t(len) + 1, H5P_DEFAULT);
      out.push_back(dataset(g.get(), gpath, name));
    }
    return out;
  }

  NamedArray dataset(hid_t g, const std::string& gpath, const std::string& name) {
    std::string where = gpath + "/" + name;
    // H5Oopen + H5Iget_type instead of H5Oget_info, whose signature differs between HDF5 1.10 and 1.12.
    H5Obj ds(H5Oopen(g, name.c_str(), H5P_DEFAULT), H5Oclose);
    if (!ds.ok()) fail(fmt::format("cannot open '{}'{}", where, hdf5_reason()));
    if (H5Iget_type(ds.get()) != H5I_DATASET) fail(fmt::format("'{}' is not a dataset", where));
    H5Obj type(H5Dget_type(ds.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != 4)
      fail(fmt::format("dataset '{}' is not float32", where));
    H5Obj space(H5Dget_space(ds.get()), H5Sclose);
    int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
    if (rank < 0) fail(fmt::format("cannot read the shape of dataset '{}'{}", where, hdf5_reason()));
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    NamedArray a{name, Shape(dims.begin(), dims.end()), {}};
    size_t n = size_t(H5Sget_simple_extent_npoints(space.get()));
    std::vector<float>& buf = keep ? a.data : scratch;
    buf.resize(n);
    if (n > 0 && H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
      fail(fmt::format("cannot read dataset '{}' (truncated or corrupt){}", where, hdf5_reason()));
    uint32_t stored = int_attr<uint32_t>(ds.get(), "crc32c", "dataset '" + where + "'");
    uint32_t actual = crc32c(buf.data(), n * sizeof(float));
    if (stored != actual)
      fail(fmt::format("checksum mismatch in dataset '{}' (stored {:#010x}, computed {:#010x}): the file is corrupt", where, stored, actual));
    // Intact bytes can still be values no training step writes (the trainer skips non-finite steps):
    // a model holding them computes NaN, and an optimizer resumed from them trains into NaN.
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(buf[i])) {
        size_t count = size_t(std::count_if(buf.begin(), buf.end(), [](float v) { return !std::isfinite(v); }));
        fail(fmt::format("dataset '{}' holds a non-finite value ({} at index {}; {} of {} values): refusing it", where,
                         buf[i], i, count, n));
      }
    return a;
  }

  // Names of the links of an open group, in creation order.
  std::vector<std::string> link_names(hid_t g, const std::string& gpath) const {
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) fail(fmt::format("cannot read group '{}'{}", gpath, hdf5_reason()));
    std::vector<std::string> names;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      if (len < 0) fail(fmt::format("cannot list group '{}'{}", gpath, hdf5_reason()));
      std::string name(size_t(len), '\0');
      H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), size_t(len) + 1, H5P_DEFAULT);
      names.push_back(std::move(name));
    }
    return names;
  }

  // A 1-D uint8 dataset, checked against its crc32c.
  std::vector<uint8_t> bytes_dataset(hid_t g, const std::string& gpath, const char* name) const {
    const std::string where = gpath + "/" + name;
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) fail(fmt::format("missing dataset '{}'", where));
    H5Obj ds(H5Dopen2(g, name, H5P_DEFAULT), H5Dclose);
    if (!ds.ok()) fail(fmt::format("cannot open '{}'{}", where, hdf5_reason()));
    H5Obj type(H5Dget_type(ds.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_size(type.get()) != 1)
      fail(fmt::format("dataset '{}' is not uint8", where));
    H5Obj space(H5Dget_space(ds.get()), H5Sclose);
    if (!space.ok() || H5Sget_simple_extent_ndims(space.get()) != 1) fail(fmt::format("dataset '{}' is not 1-D", where));
    std::vector<uint8_t> v(size_t(H5Sget_simple_extent_npoints(space.get())));
    if (!v.empty() && H5Dread(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
      fail(fmt::format("cannot read dataset '{}' (truncated or corrupt){}", where, hdf5_reason()));
    const uint32_t stored = int_attr<uint32_t>(ds.get(), "crc32c", "dataset '" + where + "'");
    const uint32_t actual = crc32c(v.data(), v.size());
    if (stored != actual)
      fail(fmt::format("checksum mismatch in dataset '{}' (stored {:#010x}, computed {:#010x}): the file is corrupt", where, stored, actual));
    return v;
  }

  // /quant: one group per quantised weight (see checkpoint.h), each checked against the format.
  std::vector<QuantTensor> quant_group(const std::vector<NamedArray>& params) {
    H5Obj qg(H5Gopen2(file.get(), "/quant", H5P_DEFAULT), H5Gclose);
    if (!qg.ok()) fail("cannot open group '/quant'" + hdf5_reason());
    std::vector<QuantTensor> out;
    for (const std::string& name : link_names(qg.get(), "/quant")) {
      const std::string gpath = "/quant/" + name;
      H5Obj g(H5Gopen2(qg.get(), name.c_str(), H5P_DEFAULT), H5Gclose);
      if (!g.ok()) fail(fmt::format("'{}' is not a group{}", gpath, hdf5_reason()));
      for (const NamedArray& p : params)
        if (p.name == name) fail(fmt::format("'{}' is both in '/params' and quantised", name));
      QuantTensor t;
      t.name = name;
      t.bits = int(int_attr<int64_t>(g.get(), "bits", "'" + gpath + "'"));
      t.N = int_attr<int64_t>(g.get(), "rows", "'" + gpath + "'");
      t.K = int_attr<int64_t>(g.get(), "cols", "'" + gpath + "'");
      if ((t.bits != 8 && t.bits != 4) || t.N < 0 || t.K < 0 || (t.bits == 4 && t.K % kQuantGroup != 0))
        fail(fmt::format("'{}': int{} [{}, {}] is not a valid quantised weight (8 bits, or 4 with cols a multiple of {})",
                         gpath, t.bits, t.N, t.K, kQuantGroup));
      t.q = bytes_dataset(g.get(), gpath, "q");
      const bool was_keep = keep;
      keep = true;  // the scales are small; kept even when verifying
      NamedArray sc = dataset(g.get(), gpath, "scales");
      keep = was_keep;
      t.scales = std::move(sc.data);
      if (int64_t(t.q.size()) != quant_bytes(t.bits, t.N, t.K) || int64_t(t.scales.size()) != quant_scales(t.bits, t.N, t.K))
        fail(fmt::format("'{}': {} bytes and {} scales, expected {} and {} for int{} [{}, {}]", gpath, t.q.size(),
                         t.scales.size(), quant_bytes(t.bits, t.N, t.K), quant_scales(t.bits, t.N, t.K), t.bits, t.N, t.K));
      for (float v : t.scales)
        if (v < 0) fail(fmt::format("'{}': a negative scale ({}): the file is corrupt", gpath, v));
      if (!keep) t.q = {};
      out.push_back(std::move(t));
    }
    return out;
  }

  void mirrors(const std::vector<NamedArray>& params, const std::vector<NamedArray>& opt, const char* gpath) const {
    if (opt.empty()) return;
    if (opt.size() != params.size()) fail(fmt::format("'{}' has {} tensors but '/params' has {}", gpath, opt.size(), params.size()));
    for (size_t i = 0; i < opt.size(); ++i)
      if (opt[i].name != params[i].name || opt[i].shape != params[i].shape)
        fail(fmt::format("'{}/{}' {} does not match '/params/{}' {}", gpath, opt[i].name, shape_str(opt[i].shape),
                         params[i].name, shape_str(params[i].shape)));
  }

  Checkpoint run() {
    std::error_code ec;
    if (!fs::exists(path, ec)) fail("no such file");
    if (!fs::is_regular_file(path, ec)) fail("not a regular file");
    htri_t is_h5 = H5Fis_hdf5(path.c_str());
    if (is_h5 <= 0) fail("not an HDF5 file (no HDF5 signature: empty, truncated at the start, or not a checkpoint)");
    H5Obj fapl(make_fapl(), H5Pclose);
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (f < 0) fail("cannot be opened as HDF5: truncated or corrupt" + hdf5_reason());
    file = H5Obj(f, H5Fclose);

    Checkpoint ck;
    int64_t version = int_attr<int64_t>(f, "format_version", "the root group (not a strata checkpoint?)");
    if (version != kCheckpointFormatVersion && version != kQuantCheckpointFormatVersion)
      fail(fmt::format("format version {}, this build reads version {} (and {} for quantised checkpoints)", version,
                       kCheckpointFormatVersion, kQuantCheckpointFormatVersion));
    ck.config_yaml = string_attr(f, "config", "the root group");
    uint32_t stored = int_attr<uint32_t>(f, "config_crc32c", "the root group");
    if (crc32c(ck.config_yaml.data(), ck.config_yaml.size()) != stored) fail("checksum mismatch in the 'config' attribute");
    ck.strata_version = string_attr(f, "strata_version", "the root group");
    ck.git_commit = string_attr(f, "git_commit", "the root group");
    for (auto [name, text] : {std::pair{"tokenizer_json", &ck.tokenizer_json}, std::pair{"hf_config_json", &ck.hf_config_json},
                              std::pair{"tokenizer_config_json", &ck.tokenizer_config_json}}) {
      if (H5Aexists(f, name) <= 0) continue;  // optional: only models imported from Hugging Face have them
      *text = string_attr(f, name, "the root group");
      const std::string crc_name = std::string(name) + "_crc32c";
      if (crc32c(text->data(), text->size()) != int_attr<uint32_t>(f, crc_name.c_str(), "the root group"))
        fail(fmt::format("checksum mismatch in the '{}' attribute", name));
    }

    ck.params = group("/params");
    ck.adam_m = group("/optim/m");
    ck.adam_v = group("/optim/v");
    mirrors(ck.params, ck.adam_m, "/optim/m");
    mirrors(ck.params, ck.adam_v, "/optim/v");

    if (H5Lexists(f, "/state", H5P_DEFAULT) <= 0) fail("missing group '/state'");
    H5Obj state(H5Gopen2(f, "/state", H5P_DEFAULT), H5Gclose);
    if (!state.ok()) fail("cannot open group '/state'" + hdf5_reason());
    visit_fields(ck.state, [&](const char* name, auto& v) {
      v = int_attr<std::decay_t<decltype(v)>>(state.get(), name, "'/state'");
      // Counters only grow from 0; a negative step would run the schedule at a negative learning rate.
      if constexpr (std::is_signed_v<std::decay_t<decltype(v)>>)
        if (v < 0) fail(fmt::format("'/state' attribute '{}' is {}; the counters of a training run are never negative", name, v));
    });
    const bool has_quant = H5Lexists(f, "/quant", H5P_DEFAULT) > 0;
    if (has_quant != (version == kQuantCheckpointFormatVersion))
      fail(has_quant ? "a '/quant' group in a format version 1 file" : "format version 2 (quantised) without a '/quant' group");
    if (has_quant) ck.quant = quant_group(ck.params);
    if (H5Lexists(f, "/norm_stats", H5P_DEFAULT) > 0) {
      H5Obj ns(H5Gopen2(f, "/norm_stats", H5P_DEFAULT), H5Gclose);
      if (!ns.ok()) fail("cannot open group '/norm_stats'" + hdf5_reason());
      ck.norm_stats = load_norm_stats(ns.get(), fmt::format("checkpoint '{}' /norm_stats", path));
    }
    if (file.close() < 0) fail("error closing the file" + hdf5_reason());
    return ck;
  }
};

// Steps of the files named ckpt-<digits>.h5 in dir (exactly; "*.h5.tmp" and others are ignored).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string f = it->path().filename().string();
    if (f.size() <= 8 || f.rfind("ckpt-", 0) != 0 || f.substr(f.size() - 3) != ".h5") continue;
    std::string digits = f.substr(5, f.size() - 8);
    if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.emplace_back(std::stoll(digits), it->path().string());
  }
  // Newest first; the name breaks ties so the order is deterministic.
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.first != b.first ? a.first > b.first : a.second > b.second; });
  return out;
}

}  // namespace

CheckpointView view_of(const Checkpoint& ck) {
  auto views = [](const std::vector<NamedArray>& v) {
    std::vector<ArrayView> out;
    out.reserve(v.size());
    for (auto& a : v) {
      int64_t n = 1;
      for (auto d : a.shape) n *= d;
      STRATA_CHECK(n == int64_t(a.data.size()), "checkpoint tensor '{}': shape {} has {} elements but data has {}", a.name,
                   shape_str(a.shape), n, a.data.size());
      out.push_back({a.name, a.shape, a.data.data()});
    }
    return out;
  };
  CheckpointView v{ck.config_yaml,    views(ck.params),  views(ck.adam_m),  views(ck.adam_v),
                   ck.state,          ck.tokenizer_json, ck.hf_config_json, ck.norm_stats};
  v.tokenizer_config_json = ck.tokenizer_config_json;
  if (!ck.quant.empty()) v.quant = &ck.quant;
  return v;
}

void save_checkpoint(const std::string& path, const CheckpointView& ck) {
  validate(path, ck);
  QuietHdf5 quiet;
  // Durable before success is reported and older checkpoints are pruned.
  replace_file_atomically(path, fmt::format("saving checkpoint '{}'", path),
                          [&](const std::string& tmp) { Saver{path}.write(tmp, ck); });
}

void save_checkpoint(const std::string& path, const Checkpoint& ck) { save_checkpoint(path, view_of(ck)); }

Checkpoint load_checkpoint(const std::string& path) {
  QuietHdf5 quiet;
  return Loader{path, true, {}, {}}.run();
}

void verify_checkpoint(const std::string& path) {
  QuietHdf5 quiet;
  Loader{path, false, {}, {}}.run();
}

std::string checkpoint_filename(int64_t step) { return fmt::format("ckpt-{:08d}.h5", step); }

std::string save_in_run_dir(const std::string& run_dir, const CheckpointView& ck, int keep_last) {
  STRATA_CHECK(keep_last >= 1, "keep_last must be at least 1, got {}", keep_last);
  fs::create_directories(run_dir);
  std::string path = (fs::path(run_dir) / checkpoint_filename(ck.state.step)).string();
  save_checkpoint(path, ck);
  auto all = list_checkpoints(run_dir);
  std::error_code ec;
  // keep_last files in all: the one just written plus the newest keep_last - 1 others.
  int kept = 1;
  for (auto& [step, p] : all)
    if (p != path && kept++ >= keep_last) fs::remove(p, ec);
  // Leftovers of saves that were killed before their rename; only one trainer writes a run dir.
  std::vector<fs::path> stale;
  for (auto it = fs::directory_iterator(run_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string f = it->path().filename().string();
    if (f.rfind("ckpt-", 0) == 0 && f.size() > 7 && f.substr(f.size() - 7) == ".h5.tmp") stale.push_back(it->path());
  }
  for (auto& p : stale) fs::remove(p, ec);
  return path;
}

std::string save_in_run_dir(const std::string& run_dir, const Checkpoint& ck, int keep_last) {
  return save_in_run_dir(run_dir, view_of(ck), keep_last);
}

std::optional<std::string> newest_good_checkpoint(const std::string& run_dir, std::string* why_skipped) {
  if (why_skipped) why_skipped->clear();
  for (auto& [step, path] : list_checkpoints(run_dir)) {
    try {
      verify_checkpoint(path);
      return path;
    } catch (const std::exception& e) {
      if (why_skipped) *why_skipped += (why_skipped->empty() ? "" : "; ") + std::string(e.what());
    }
  }
  return std::nullopt;
}

}  // namespace strata
