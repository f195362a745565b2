// Stream capture and CUDA graphs on the emulator. While a stream captures, its work becomes nodes of
// a graph instead of running; the calls CUDA prohibits during capture are refused as CUDA refuses
// them (synchronising with a capturing stream, the legacy stream while a blocking stream captures,
// device-wide synchronisation, "potentially unsafe" calls such as cudaMalloc under the capture-mode
// rules) and invalidate the capture, so that cudaStreamEndCapture then fails with
// cudaErrorStreamCaptureInvalidated, as on a GPU. Graphs run by queueing their nodes in order on the
// launch stream; cudaGraphExecUpdate applies CUDA's topology rules (node count and kinds; memory
// nodes cannot be updated).
#include <set>
#include <string>
#include <thread>

#include "runtime_internal.h"

struct CUgraphNode_st {
  strata_emu::rt::NodeKind kind;
  std::string what;
  std::function<void()> work;
};

namespace strata_emu::rt {
namespace {

// A graph's own allocation (cudaMallocAsync during capture): its address is fixed for the graph's
// life, as CUDA's graph memory nodes give, and released with the last graph or exec holding it.
struct GraphAlloc {
  void* p = nullptr;
  size_t bytes = 0;
  GraphAlloc(void* p_, size_t b) : p(p_), bytes(b) {}
  GraphAlloc(const GraphAlloc&) = delete;
  GraphAlloc& operator=(const GraphAlloc&) = delete;
  ~GraphAlloc() { device_release(p); }
};
using Allocs = std::vector<std::shared_ptr<GraphAlloc>>;

}  // namespace
}  // namespace strata_emu::rt

struct CUgraph_st {
  std::vector<std::unique_ptr<CUgraphNode_st>> nodes;
  strata_emu::rt::Allocs allocs;
};

struct CUgraphExec_st {
  std::vector<CUgraphNode_st> nodes;
  std::shared_ptr<const strata_emu::rt::Allocs> allocs;
};

namespace strata_emu::rt {

struct Capture {
  CUgraph_st* graph = nullptr;  // owned until cudaStreamEndCapture hands it over
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  bool invalidated = false;
  bool ended = false;
  unsigned long long id = 0;
  std::shared_ptr<Stream> origin;
  std::vector<std::shared_ptr<Stream>> streams;  // the origin and the streams that joined it
};

namespace {

std::vector<std::shared_ptr<Capture>>& ongoing() {  // under capture_mutex()
  static auto* v = new std::vector<std::shared_ptr<Capture>>;
  return *v;
}
unsigned long long g_capture_ids = 0;  // under capture_mutex()
thread_local cudaStreamCaptureMode t_mode = cudaStreamCaptureModeGlobal;  // cudaThreadExchangeStreamCaptureMode

std::mutex g_handles_mu;
std::set<const void*>& handles() {  // live graphs and execs
  static auto* s = new std::set<const void*>;
  return *s;
}
void add_handle(const void* h) {
  std::lock_guard<std::mutex> lock(g_handles_mu);
  handles().insert(h);
}
bool drop_handle(const void* h) {
  std::lock_guard<std::mutex> lock(g_handles_mu);
  return h && handles().erase(h) != 0;
}
bool live_handle(const void* h) {
  std::lock_guard<std::mutex> lock(g_handles_mu);
  return h && handles().count(h) != 0;
}

bool touches_blocking_stream(const Capture& c) {
  for (auto& s : c.streams)
    if (s->blocking()) return true;
  return false;
}

}  // namespace

std::mutex& capture_mutex() {
  static auto* m = new std::mutex;
  return *m;
}

cudaStreamCaptureStatus capture_status_locked(const Stream& s) {
  if (!s.capture) return cudaStreamCaptureStatusNone;
  return s.capture->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
}

std::shared_ptr<Capture> capture_of_locked(const Stream& s) { return s.capture; }
bool capture_ongoing_locked(const Capture& c) { return !c.ended; }
void invalidate_capture_locked(Capture& c) { c.invalidated = true; }

void invalidate_locked(Stream& s) {
  if (s.capture) s.capture->invalidated = true;
}

cudaError_t record_node_locked(Stream& s, NodeKind kind, const char* what, std::function<void()> work, void* alloc,
                               size_t alloc_bytes) {
  Capture& c = *s.capture;
  if (c.invalidated) return cudaErrorStreamCaptureInvalidated;
  c.graph->nodes.push_back(std::make_unique<CUgraphNode_st>(CUgraphNode_st{kind, what ? what : "", std::move(work)}));
  if (alloc) c.graph->allocs.push_back(std::make_shared<GraphAlloc>(alloc, alloc_bytes));
  return cudaSuccess;
}

cudaError_t join_capture_locked(Stream& s, const std::shared_ptr<Stream>& sp, const std::shared_ptr<Capture>& c) {
  if (s.capture == c) return c->invalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  if (s.capture) {  // two capture sequences may not merge
    s.capture->invalidated = c->invalidated = true;
    return cudaErrorStreamCaptureMerge;
  }
  if (s.legacy) {
    c->invalidated = true;
    return cudaErrorStreamCaptureImplicit;
  }
  s.capture = c;
  c->streams.push_back(sp);
  return c->invalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
}

cudaError_t check_legacy_use() {
  std::lock_guard<std::mutex> lock(capture_mutex());
  bool refused = false;
  for (auto& c : ongoing())
    if (touches_blocking_stream(*c)) c->invalidated = refused = true;
  return refused ? cudaErrorStreamCaptureImplicit : cudaSuccess;
}

cudaError_t check_unsafe_call() {
  if (t_mode == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  const auto me = std::this_thread::get_id();
  std::lock_guard<std::mutex> lock(capture_mutex());
  bool refused = false;
  for (auto& c : ongoing()) {
    const bool mine = c->thread == me && c->mode != cudaStreamCaptureModeRelaxed;
    const bool global = c->thread != me && c->mode == cudaStreamCaptureModeGlobal && t_mode == cudaStreamCaptureModeGlobal;
    if (mine || global) c->invalidated = refused = true;
  }
  return refused ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

cudaError_t check_device_sync() {
  std::lock_guard<std::mutex> lock(capture_mutex());
  for (auto& c : ongoing()) c->invalidated = true;
  return ongoing().empty() ? cudaSuccess : cudaErrorStreamCaptureUnsupported;
}

cudaError_t capture_malloc_locked(Stream& s, void** p, size_t bytes) {
  if (s.capture->invalidated) return cudaErrorStreamCaptureInvalidated;
  void* mem = device_alloc(bytes);
  if (!mem) return cudaErrorMemoryAllocation;
  // Each replay hands the memory out uninitialised again.
  const cudaError_t e = record_node_locked(s, NodeKind::mem_alloc, "cudaMallocAsync",
                                           [mem, bytes] { fill_uninitialised(mem, bytes); }, mem, bytes);
  *p = mem;
  return e;
}

cudaError_t capture_free_locked(Stream& s, void* p) {
  Capture& c = *s.capture;
  if (c.invalidated) return cudaErrorStreamCaptureInvalidated;
  for (auto& a : c.graph->allocs)
    if (a->p == p) {
      const size_t n = a->bytes;
      // The graph keeps the memory; what reads it after the free node sees garbage.
      return record_node_locked(s, NodeKind::mem_free, "cudaFreeAsync", [p, n] { fill_uninitialised(p, n); });
    }
  if (!is_allocation_base(p)) return cudaErrorInvalidValue;
  return record_node_locked(s, NodeKind::mem_free, "cudaFreeAsync", [p] {
    if (!device_release(p)) fault("cudaFreeAsync (graph node): %p is not a live allocation (freed twice?)", p);
  });
}

}  // namespace strata_emu::rt

using namespace strata_emu;
using namespace strata_emu::rt;

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  if (s->legacy) return ret(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot be captured
  if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) return ret(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(capture_mutex());
  if (s->capture) return ret(cudaErrorIllegalState);
  auto c = std::make_shared<Capture>();
  c->graph = new CUgraph_st;
  c->mode = mode;
  c->thread = std::this_thread::get_id();
  c->id = ++g_capture_ids;
  c->origin = s;
  c->streams.push_back(s);
  s->capture = c;
  ongoing().push_back(c);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  if (!pGraph) return ret(cudaErrorInvalidValue);
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  std::shared_ptr<Capture> c;
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    c = s->capture;
    if (!c) return ret(cudaErrorIllegalState);
    if (c->origin != s) {  // ended from a joined stream
      c->invalidated = true;
      return ret(cudaErrorStreamCaptureUnmatched);
    }
    if (c->mode != cudaStreamCaptureModeRelaxed && c->thread != std::this_thread::get_id())
      return ret(cudaErrorStreamCaptureWrongThread);
    for (auto& t : c->streams) t->capture.reset();
    c->ended = true;
    auto& v = ongoing();
    for (size_t i = 0; i < v.size(); ++i)
      if (v[i] == c) {
        v.erase(v.begin() + long(i));
        break;
      }
  }
  CUgraph_st* g = c->graph;
  c->graph = nullptr;
  if (c->invalidated) {
    delete g;
    *pGraph = nullptr;
    return ret(cudaErrorStreamCaptureInvalidated);
  }
  add_handle(g);
  *pGraph = g;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus) {
  return cudaStreamGetCaptureInfo(stream, pCaptureStatus);
}

cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream, cudaStreamCaptureStatus* status, unsigned long long* id,
                                     cudaGraph_t* graph) {
  if (!status) return ret(cudaErrorInvalidValue);
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lock(capture_mutex());
  if (s->legacy) {
    // Asking about the legacy stream while a blocking stream captures is itself an implicit use.
    for (auto& c : ongoing())
      if (touches_blocking_stream(*c)) return ret(cudaErrorStreamCaptureImplicit);
    *status = cudaStreamCaptureStatusNone;
    return cudaSuccess;
  }
  *status = capture_status_locked(*s);
  if (id && s->capture) *id = s->capture->id;
  if (graph) *graph = s->capture ? s->capture->graph : nullptr;
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  if (!mode || *mode < cudaStreamCaptureModeGlobal || *mode > cudaStreamCaptureModeRelaxed)
    return ret(cudaErrorInvalidValue);
  std::swap(*mode, t_mode);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  if (!pGraphExec || !live_handle(graph)) return ret(cudaErrorInvalidValue);
  auto* e = new CUgraphExec_st;
  for (auto& n : graph->nodes) e->nodes.push_back(*n);
  e->allocs = std::make_shared<const Allocs>(graph->allocs);
  add_handle(e);
  *pGraphExec = e;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  if (!live_handle(graphExec)) return ret(cudaErrorInvalidValue);
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_status_locked(*s) != cudaStreamCaptureStatusNone) {
      // Launched into a capture: its nodes join the graph being recorded.
      for (auto& n : graphExec->nodes)
        if (cudaError_t e = record_node_locked(*s, n.kind, n.what.c_str(), n.work); e != cudaSuccess) return ret(e);
      for (auto& a : *graphExec->allocs) s->capture->graph->allocs.push_back(a);
      return cudaSuccess;
    }
  }
  if (s->legacy)
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return ret(e);
  // One queued item per node: other streams' work may interleave between them, as on a GPU. Each
  // holds the graph's memory, so the exec may be destroyed while its launch is pending.
  for (auto& n : graphExec->nodes)
    push(s, "graph node", [work = n.work, keep = graphExec->allocs] { work(); });
  return cudaSuccess;
}

cudaError_t cudaGraphExecUpdate(cudaGraphExec_t hGraphExec, cudaGraph_t hGraph,
                                cudaGraphExecUpdateResultInfo* resultInfo) {
  if (!live_handle(hGraphExec) || !live_handle(hGraph) || !resultInfo) return ret(cudaErrorInvalidValue);
  auto fail = [&](cudaGraphExecUpdateResult why, cudaGraphNode_t node) {
    resultInfo->result = why;
    resultInfo->errorNode = node;
    resultInfo->errorFromNode = nullptr;
    return ret(cudaErrorGraphExecUpdateFailure);
  };
  auto& old_nodes = hGraphExec->nodes;
  auto& new_nodes = hGraph->nodes;
  if (old_nodes.size() != new_nodes.size()) return fail(cudaGraphExecUpdateErrorTopologyChanged, nullptr);
  for (size_t i = 0; i < new_nodes.size(); ++i) {
    const NodeKind k = new_nodes[i]->kind;
    // Graph memory nodes cannot be updated (CUDA: graphs with allocation or free nodes).
    if (k == NodeKind::mem_alloc || k == NodeKind::mem_free || old_nodes[i].kind == NodeKind::mem_alloc ||
        old_nodes[i].kind == NodeKind::mem_free)
      return fail(cudaGraphExecUpdateErrorNotSupported, new_nodes[i].get());
    if (k != old_nodes[i].kind) return fail(cudaGraphExecUpdateErrorNodeTypeChanged, new_nodes[i].get());
  }
  // Same topology: the new parameters (a kernel's function may change too, since CUDA 11.2).
  for (size_t i = 0; i < new_nodes.size(); ++i) {
    old_nodes[i].what = new_nodes[i]->what;
    old_nodes[i].work = new_nodes[i]->work;
  }
  resultInfo->result = cudaGraphExecUpdateSuccess;
  resultInfo->errorNode = resultInfo->errorFromNode = nullptr;
  return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  if (!live_handle(graph) || !numNodes) return ret(cudaErrorInvalidValue);
  if (nodes)
    for (size_t i = 0; i < *numNodes && i < graph->nodes.size(); ++i) nodes[i] = graph->nodes[i].get();
  *numNodes = graph->nodes.size();
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!drop_handle(graph)) return ret(cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  if (!drop_handle(graphExec)) return ret(cudaErrorInvalidValue);
  delete graphExec;
  return cudaSuccess;
}
