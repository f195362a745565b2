#pragma once
// HDF5 plumbing shared by the files of train/ that read and write HDF5 (checkpoints, episodes):
// RAII for every hid_t, one-line error reasons instead of HDF5's stderr dump, and the file access
// properties. Include only from .cpp files: it pulls in <hdf5.h>.
#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

namespace strata {


// Owns one hid_t; every exit path (including exceptions) releases it, so a failed save never leaves
// the .tmp open and a failed load never leaks handles.
class H5Obj {
 public:
  H5Obj() = default;
  H5Obj(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  H5Obj(H5Obj&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  H5Obj& operator=(H5Obj&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  H5Obj(const H5Obj&) = delete;
  H5Obj& operator=(const H5Obj&) = delete;
  ~H5Obj() { close(); }
  herr_t close() {
    herr_t r = 0;
    if (id_ >= 0 && close_) r = close_(id_);
    id_ = H5I_INVALID_HID;
    return r;
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

// HDF5 prints its whole error stack to stderr by default; we turn failures into one exception with
// the innermost HDF5 message instead. Restored on exit so other HDF5 users keep their setting.
class QuietHdf5 {
 public:
  QuietHdf5() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5(const QuietHdf5&) = delete;
  QuietHdf5& operator=(const QuietHdf5&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// When a file's close fails (a write error while flushing, a file too damaged to close), HDF5 1.10
// keeps an id for it that is half torn down. Its atexit handler then closes that id again and
// crashes in H5F__close_cb, or loops and prints "HDF5: infinite loop closing library" and a table of
// ids. Every id of ours is released by H5Obj on every path; what is left is HDF5's own state, which
// the process does not need at exit (our files are closed or abandoned .tmp files, already removed).
// So the library is told not to tear itself down at exit. Must run before HDF5 initialises, hence a
// static initialiser (an inline variable: every file that includes this header runs it, once).
[[maybe_unused]] inline const herr_t g_hdf5_no_atexit = H5dont_atexit();

// The most specific message on the current HDF5 error stack, as " (HDF5: ...)", or "".
inline std::string hdf5_reason() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &msg);
  // The POSIX driver's message is a multi-line dump ("file write failed: time = ..., filename = ...,
  // errno = 28, error message = 'No space left on device', buf = 0x..., ..."): keep what it says.
  const std::string key = "error message = '";
  if (size_t at = msg.find(key); at != std::string::npos) {
    size_t end = msg.find('\'', at + key.size());
    std::string what = msg.substr(0, std::min(msg.find(':'), msg.find('\n')));
    msg = what + ": " + msg.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
  }
  return msg.empty() ? "" : " (HDF5: " + msg + ")";
}

inline hid_t make_fapl() {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) return fapl;
  // v2 superblock and object headers carry checksums, so corrupt metadata fails loudly on open;
  // raw data is covered by our per-dataset CRC32C.
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  // Close the file for real on H5Fclose, before we fsync and rename it.
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
  // Cluster file systems without flock support would otherwise refuse to open anything.
  H5Pset_file_locking(fapl, true, true);
#endif
  return fapl;
}

template <class T> struct IntType;
template <> struct IntType<int64_t> {
  static hid_t file() { return H5T_STD_I64LE; }
  static hid_t mem() { return H5T_NATIVE_INT64; }
};
template <> struct IntType<uint64_t> {
  static hid_t file() { return H5T_STD_U64LE; }
  static hid_t mem() { return H5T_NATIVE_UINT64; }
};
template <> struct IntType<uint32_t> {
  static hid_t file() { return H5T_STD_U32LE; }
  static hid_t mem() { return H5T_NATIVE_UINT32; }
};

}  // namespace strata
