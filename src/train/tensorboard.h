#pragma once
// Writes TensorBoard event files (ARCHITECTURE.md §8) without TensorFlow or protobuf: TFRecord
// framing around hand-encoded Event protos.
//   record: u64 len (LE) | u32 masked crc32c(len bytes) | data | u32 masked crc32c(data)
//   first:  Event{1: wall_time (double), 3: file_version = "brain.Event:2"}
//   scalar: Event{1: wall_time, 2: step (int64), 5: Summary{1: Value{1: tag, 2: simple_value (float)}}}
#include <cstdint>
#include <cstdio>
#include <string>

namespace strata {

double unix_time_now();  // seconds since the epoch, sub-second resolution

class TensorBoardWriter {
 public:
  // Creates `dir` if needed and opens events.out.tfevents.<unix time>.<hostname> in it (with a
  // ".<n>" suffix if that name is taken, e.g. a resume within the same second).
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, int64_t step, float value, double wall_time = unix_time_now());
  // Makes everything written so far visible to readers. Also done automatically every few seconds
  // from add_scalar, so a crash loses at most that much.
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::FILE* f_ = nullptr;
  std::string path_;
  std::string event_, summary_;  // reused encode buffers
  double last_flush_ = 0;
};

// Exposed for tests: one TFRecord frame around `data`.
std::string tfrecord_frame(const std::string& data);

}  // namespace strata
