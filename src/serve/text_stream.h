#pragma once
// Generated ids -> text, token by token, for a streamed response: incremental detokenization (a
// window of ids decoded at a time, as transformers' TextStreamer and vLLM do, so a token that is
// half of a UTF-8 character waits for the other half) and stop strings (text that could be the
// start of a stop string is held back until it is known not to be one; at a stop string the text
// is cut before it and the stream ends). No model or HTTP here: the decoder is a function.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace strata {

class TextStream {
 public:
  using Decode = std::function<std::string(const std::vector<int32_t>&)>;
  TextStream(Decode decode, std::vector<std::string> stop);

  // Adds a generated id; returns the text now safe to send (maybe ""). After a stop string was seen
  // (stopped() turns true) it returns "" and ignores further ids.
  std::string push(int32_t id);
  // At the end of generation (no stop string): the text held back.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::string release(std::string text);  // through the stop-string filter

  Decode decode_;
  std::vector<std::string> stop_;
  std::vector<int32_t> ids_;
  // ids_[prefix_, read_): already sent, decoded again as the left context of the ids after read_.
  size_t prefix_ = 0, read_ = 0;
  std::string held_;               // decoded text not yet sent: it may begin a stop string
  bool stopped_ = false;
};

// The length of the longest prefix of `s` that ends in an incomplete UTF-8 sequence's start (the
// bytes that may still become a character), i.e. s.size() minus that tail's length.
size_t utf8_complete_prefix(const std::string& s);

}  // namespace strata
