// Streams and events of the emulated device, modelling CUDA's asynchrony so that missing ordering
// shows: queued work does not run at enqueue but when something waits for it (a stream or event
// synchronisation, a synchronous or device-to-host copy, cudaDeviceSynchronize, a long queue), and
// when several streams' queues must run they are interleaved in a seeded random order that respects
// each stream's FIFO, the events waited on, and the legacy default stream's implicit ordering with
// blocking streams (not with cudaStreamNonBlocking ones). Work runs on the host thread that waits
// for it; two threads draining two streams run concurrently, one stream's items never do.
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <random>
#include <set>
#include <unordered_map>

#include "runtime_internal.h"

namespace strata_emu::rt {
namespace {

constexpr size_t kMaxQueued = 4096;  // a longer queue is run down to bound memory

struct Streams {
  std::mutex mu;
  std::unordered_map<const Stream*, std::shared_ptr<Stream>> live;
  std::shared_ptr<Stream> legacy = [] {
    auto s = std::make_shared<Stream>();
    s->legacy = true;
    return s;
  }();
};
Streams& streams() {
  static Streams* s = new Streams;  // never destroyed: static destructors may still use streams
  return *s;
}

// Wakes threads waiting for an item another thread is running.
std::mutex g_done_mu;
std::condition_variable g_done_cv;

std::atomic<uint64_t> g_seed{[] {
  const char* v = std::getenv("STRATA_EMU_SEED");
  return v && *v ? uint64_t(std::strtoull(v, nullptr, 10)) : uint64_t(20240601);
}()};
std::atomic<uint64_t> g_drains{0};

bool deps_done(const Item& it) {
  for (const Dep& d : it.deps)
    if (!done(d)) return false;
  return true;
}

// Runs s's head item if it is at most `upto` and ready; false if it was not (or another thread ran it).
bool run_head(const std::shared_ptr<Stream>& s, uint64_t upto) {
  std::unique_lock<std::mutex> run(s->run_mu);
  Item it;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->queue.empty() || s->queue.front().seq > upto || !deps_done(s->queue.front())) return false;
    it = std::move(s->queue.front());
    s->queue.pop_front();
  }
  struct Complete {  // also when the work throws
    Stream& s;
    uint64_t seq;
    ~Complete() {
      s.completed.store(seq);
      std::lock_guard<std::mutex> lock(g_done_mu);
      g_done_cv.notify_all();
    }
  } complete{*s, it.seq};
  if (it.work) it.work();
  return true;
}

}  // namespace

void set_seed(uint64_t seed) {
  g_seed.store(seed);
  g_drains.store(0);
}

const char* kind_name(NodeKind k) {
  switch (k) {
    case NodeKind::kernel: return "kernel";
    case NodeKind::memcpy: return "memcpy";
    case NodeKind::memset: return "memset";
    case NodeKind::mem_alloc: return "mem_alloc";
    case NodeKind::mem_free: return "mem_free";
    case NodeKind::empty: return "empty";
  }
  return "?";
}

std::shared_ptr<Stream> stream_of(cudaStream_t h) {
  auto& st = streams();
  if (h == nullptr || h == cudaStreamLegacy || h == cudaStreamPerThread) return st.legacy;
  std::lock_guard<std::mutex> lock(st.mu);
  auto it = st.live.find(reinterpret_cast<const Stream*>(h));
  return it == st.live.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Stream>> live_streams() {
  auto& st = streams();
  std::vector<std::shared_ptr<Stream>> v{st.legacy};
  std::lock_guard<std::mutex> lock(st.mu);
  for (auto& [k, s] : st.live) v.push_back(s);
  return v;
}

Dep tail_of(const std::shared_ptr<Stream>& s) {
  std::lock_guard<std::mutex> lock(s->mu);
  return Dep{s, s->enqueued};
}

bool done(const Dep& d) { return !d.stream || d.stream->completed.load() >= d.seq; }

Dep push(const std::shared_ptr<Stream>& s, const char* what, std::function<void()> work, std::vector<Dep> extra) {
  std::vector<Dep> deps;
  for (Dep& d : extra)
    if (!done(d)) deps.push_back(std::move(d));
  // The legacy default stream waits for every blocking stream's earlier work, and blocking streams
  // wait for its earlier work; cudaStreamNonBlocking streams do neither.
  if (s->legacy) {
    for (auto& t : live_streams())
      if (t->blocking()) {
        Dep d = tail_of(t);
        if (!done(d)) deps.push_back(std::move(d));
      }
  } else if (s->blocking()) {
    Dep d = tail_of(streams().legacy);
    if (!done(d)) deps.push_back(std::move(d));
  }
  Dep out;
  size_t queued = 0;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    Item it;
    it.seq = ++s->enqueued;
    it.what = what;
    it.work = std::move(work);
    it.deps = std::move(deps);
    out = Dep{s, it.seq};
    s->queue.push_back(std::move(it));
    queued = s->queue.size();
  }
  if (queued > kMaxQueued) run_until({out});
  return out;
}

void run_until(std::vector<Dep> targets) {
  std::mt19937_64 rng(g_seed.load() * 0x9e3779b97f4a7c15ull + g_drains.fetch_add(1));
  for (;;) {
    // What must run: each target, and (transitively) what the heads of those streams wait for.
    std::unordered_map<Stream*, Dep> need;
    std::vector<Dep> todo;
    for (const Dep& d : targets)
      if (!done(d)) todo.push_back(d);
    if (todo.empty()) return;
    while (!todo.empty()) {
      Dep d = std::move(todo.back());
      todo.pop_back();
      if (done(d)) continue;
      Dep& n = need[d.stream.get()];
      if (n.stream && n.seq >= d.seq) continue;
      n = d;
      std::lock_guard<std::mutex> lock(d.stream->mu);
      if (!d.stream->queue.empty())
        for (const Dep& w : d.stream->queue.front().deps)
          if (!done(w)) todo.push_back(w);
    }
    // The streams whose head can run now, in a random order.
    std::vector<Dep> ready;
    for (auto& [p, d] : need) {
      std::lock_guard<std::mutex> lock(p->mu);
      if (!p->queue.empty() && p->queue.front().seq <= d.seq && deps_done(p->queue.front())) ready.push_back(d);
    }
    std::shuffle(ready.begin(), ready.end(), rng);
    bool ran = false;
    for (const Dep& d : ready)
      if ((ran = run_head(d.stream, d.seq))) break;
    if (!ran) {
      // Everything needed is running on other host threads: wait for one of them to finish.
      std::unique_lock<std::mutex> lock(g_done_mu);
      g_done_cv.wait_for(lock, std::chrono::milliseconds(1));
    }
  }
}

void drain_all() {
  std::vector<Dep> all;
  for (auto& s : live_streams()) all.push_back(tail_of(s));
  run_until(std::move(all));
}

cudaError_t stream_op(cudaStream_t h, NodeKind kind, const char* what, std::function<void()> work, Dep* out) {
  auto s = stream_of(h);
  if (!s) return cudaErrorInvalidResourceHandle;
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_status_locked(*s) != cudaStreamCaptureStatusNone)
      return record_node_locked(*s, kind, what, std::move(work));
  }
  if (s->legacy)
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return e;
  Dep d = push(s, what, std::move(work));
  if (out) *out = std::move(d);
  return cudaSuccess;
}

}  // namespace strata_emu::rt

namespace strata_emu {
void enqueue(cudaStream_t stream, const char* what, std::function<void()> work) {
  const cudaError_t e = rt::stream_op(stream, rt::NodeKind::kernel, what, std::move(work));
  if (e != cudaSuccess) set_last_error(e);
}
}  // namespace strata_emu

// ---- the CUDA API: streams ----
using namespace strata_emu;
using namespace strata_emu::rt;

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  if (!pStream || (flags & ~unsigned(cudaStreamNonBlocking))) return ret(cudaErrorInvalidValue);
  auto s = std::make_shared<Stream>();
  s->flags = flags;
  auto& st = streams();
  std::lock_guard<std::mutex> lock(st.mu);
  st.live.emplace(s.get(), s);
  *pStream = reinterpret_cast<cudaStream_t>(s.get());
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* pStream) { return cudaStreamCreateWithFlags(pStream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread)
    return ret(cudaErrorInvalidResourceHandle);
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_status_locked(*s) != cudaStreamCaptureStatusNone) {
      invalidate_locked(*s);
      return ret(cudaErrorStreamCaptureUnsupported);
    }
  }
  // CUDA lets queued work finish after the handle is gone; running it now is one such order.
  run_until({tail_of(s)});
  std::lock_guard<std::mutex> lock(streams().mu);
  streams().live.erase(s.get());
  return cudaSuccess;
}

cudaError_t cudaStreamGetFlags(cudaStream_t stream, unsigned int* flags) {
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  if (!flags) return ret(cudaErrorInvalidValue);
  *flags = s->flags;
  return cudaSuccess;
}

namespace {
// Synchronising with a stream: illegal while it captures (the capture is invalidated), and for the
// legacy stream while a blocking stream captures.
cudaError_t sync_stream(cudaStream_t stream) {
  auto s = stream_of(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_status_locked(*s) != cudaStreamCaptureStatusNone) {
      invalidate_locked(*s);
      return cudaErrorStreamCaptureUnsupported;
    }
  }
  if (s->legacy)
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return e;
  run_until({tail_of(s)});
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaStreamSynchronize(cudaStream_t stream) { return ret(sync_stream(stream)); }

// The emulator has no concurrent device: "is it done?" is answered by running it.
cudaError_t cudaStreamQuery(cudaStream_t stream) { return ret(sync_stream(stream)); }

cudaError_t cudaDeviceSynchronize() {
  if (cudaError_t e = check_device_sync(); e != cudaSuccess) return ret(e);
  drain_all();
  return cudaSuccess;
}

// ---- events ----
struct CUevent_st {
  unsigned flags = 0;
  std::mutex mu;
  bool recorded = false;
  Dep dep;                                        // the record's item
  std::shared_ptr<std::atomic<int64_t>> time_ns;  // when the record's item ran (-1: not yet)
  std::shared_ptr<Capture> captured;              // last recorded in this capture
};

namespace {
std::mutex g_events_mu;
std::set<const CUevent_st*>& events() {
  static auto* e = new std::set<const CUevent_st*>;
  return *e;
}
bool event_live(cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(g_events_mu);
  return e && events().count(e) != 0;
}
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Synchronising with or querying an event last recorded in an ongoing capture is illegal.
cudaError_t event_wait(cudaEvent_t event) {
  if (!event_live(event)) return cudaErrorInvalidResourceHandle;
  Dep dep;
  std::shared_ptr<Capture> captured;
  {
    std::lock_guard<std::mutex> lock(event->mu);
    dep = event->dep;
    captured = event->captured;
  }
  if (captured) {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_ongoing_locked(*captured)) {
      invalidate_capture_locked(*captured);
      return cudaErrorCapturedEvent;
    }
    return cudaSuccess;
  }
  run_until({dep});
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event || (flags & ~unsigned(cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess)))
    return ret(cudaErrorInvalidValue);
  auto* e = new CUevent_st;
  e->flags = flags;
  std::lock_guard<std::mutex> lock(g_events_mu);
  events().insert(e);
  *event = e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  {
    std::lock_guard<std::mutex> lock(g_events_mu);
    if (!event || !events().erase(event)) return ret(cudaErrorInvalidResourceHandle);
  }
  delete event;  // a pending record holds its own time slot, not the event
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event_live(event)) return ret(cudaErrorInvalidResourceHandle);
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    const cudaStreamCaptureStatus st = capture_status_locked(*s);
    if (st == cudaStreamCaptureStatusInvalidated) return ret(cudaErrorStreamCaptureInvalidated);
    if (st == cudaStreamCaptureStatusActive) {
      // A captured event: it orders streams inside the capture (joining them), nothing outside.
      std::lock_guard<std::mutex> elock(event->mu);
      event->recorded = true;
      event->captured = capture_of_locked(*s);
      event->dep = Dep{};
      event->time_ns.reset();
      return cudaSuccess;
    }
  }
  if (s->legacy)
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return ret(e);
  auto t = std::make_shared<std::atomic<int64_t>>(-1);
  Dep d = push(s, "cudaEventRecord", [t] { t->store(now_ns()); });
  std::lock_guard<std::mutex> lock(event->mu);
  event->recorded = true;
  event->captured.reset();
  event->dep = std::move(d);
  event->time_ns = t;
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (!event_live(event)) return ret(cudaErrorInvalidResourceHandle);
  if (flags != 0 && flags != 1 /* cudaEventWaitExternal */) return ret(cudaErrorInvalidValue);
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  Dep dep;
  std::shared_ptr<Capture> captured;
  bool recorded = false;
  {
    std::lock_guard<std::mutex> lock(event->mu);
    dep = event->dep;
    captured = event->captured;
    recorded = event->recorded;
  }
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (captured && capture_ongoing_locked(*captured)) return ret(join_capture_locked(*s, s, captured));
    const cudaStreamCaptureStatus st = capture_status_locked(*s);
    if (st == cudaStreamCaptureStatusInvalidated) return ret(cudaErrorStreamCaptureInvalidated);
    // Waiting inside a capture on work outside it adds nothing to the graph: a replay is not
    // ordered after that work (CUDA records it only with cudaEventWaitExternal).
    if (st == cudaStreamCaptureStatusActive) return cudaSuccess;
  }
  if (s->legacy)
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return ret(e);
  if (!recorded || done(dep)) return cudaSuccess;
  push(s, "cudaStreamWaitEvent", nullptr, {dep});
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) { return ret(event_wait(event)); }

cudaError_t cudaEventQuery(cudaEvent_t event) { return ret(event_wait(event)); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return ret(cudaErrorInvalidValue);
  if (!event_live(start) || !event_live(end)) return ret(cudaErrorInvalidResourceHandle);
  std::shared_ptr<std::atomic<int64_t>> a, b;
  for (auto [e, t] : {std::pair{start, &a}, std::pair{end, &b}}) {
    std::lock_guard<std::mutex> lock(e->mu);
    if ((e->flags & cudaEventDisableTiming) || !e->recorded || !e->time_ns) return ret(cudaErrorInvalidResourceHandle);
    *t = e->time_ns;
  }
  const int64_t ta = a->load(), tb = b->load();
  if (ta < 0 || tb < 0) return ret(cudaErrorNotReady);
  *ms = float(double(tb - ta) * 1e-6);
  return cudaSuccess;
}
