#pragma once
// Writes TensorBoard event files (ARCHITECTURE.md §8) without TensorFlow or protobuf: TFRecord
// framing around hand-encoded Event protos.
//   record: u64 len (LE) | u32 masked crc32c(len bytes) | data | u32 masked crc32c(data)
//   first:  Event{1: wall_time (double), 3: file_version = "brain.Event:2"}
//   scalar: Event{1: wall_time, 2: step (int64), 5: Summary{1: Value{1: tag, 2: simple_value (float)}}}
//   hparams: Event{1: wall_time, 5: Summary{1: Value{1: "_hparams_/<kind>", 8: empty float tensor,
//            9: SummaryMetadata{1: PluginData{1: "hparams", 2: HParamsPluginData bytes}}}}}
//   (tensorboard/plugins/hparams: plugin_data.proto, api.proto; what its summary.py writes).
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace strata {

// One hyperparameter of a run, for TensorBoard's HPARAMS tab: a number, a string or a boolean.
struct HParam {
  enum Kind { number, string, boolean };
  std::string name;  // "optim.lr"
  Kind kind = number;
  double num = 0;
  std::string text;
  bool flag = false;
};
enum class HParamsStatus { unknown = 0, success = 1, failure = 2, running = 3 };  // api.proto Status

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
  // The HParams plugin's three summaries. The experiment names the hparams (name and type, no
  // domain: TensorBoard takes the values it finds) and the metrics (scalar tags) to tabulate; every
  // run of a sweep writes the same one, so whichever run TensorBoard reads it from is right.
  void add_hparams_experiment(const std::vector<HParam>& hparams, const std::vector<std::string>& metric_tags,
                              double wall_time = unix_time_now());
  void add_hparams_session_start(const std::vector<HParam>& hparams, const std::string& group_name,
                                 double wall_time = unix_time_now());
  void add_hparams_session_end(HParamsStatus status, double wall_time = unix_time_now());
  // Makes everything written so far visible to readers. Also done automatically every few seconds
  // from add_scalar, so a crash loses at most that much.
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  void write_hparams(const std::string& tag, const std::string& plugin_data, double wall_time);
  std::FILE* f_ = nullptr;
  std::string path_;
  std::string event_, summary_;  // reused encode buffers
  double last_flush_ = 0;
};

// Exposed for tests: one TFRecord frame around `data`.
std::string tfrecord_frame(const std::string& data);

}  // namespace strata
