// The execution half of the CPU emulator of the CUDA execution model: grids, blocks, threads as
// fibers, barriers, warp collectives, shared memory, faults.
//
// A grid runs on the host thread that calls run_grid (the runtime decides which: stream order).
// Up to kMaxResident blocks, picked at random from the grid, are resident at once; every CUDA
// thread of them is a fiber on a pooled mmap'd stack (with a guard page). At every switch point
// (barrier, warp collective, exit, some atomics) the fiber returns to the scheduler, which picks a
// random runnable fiber among all resident blocks. The randomness is seeded (STRATA_EMU_SEED, mixed
// with the host thread's launch counter) and the seed is printed in every fault, so a failing
// interleaving can be replayed. All state is per host thread: grids launched from several host
// threads run at once, with real atomics between them.
//
// Fibers switch with a hand-written x86-64 context switch (callee-saved registers and the stack
// pointer): swapcontext makes a sigprocmask system call at every switch, which is most of the cost of
// a barrier-heavy kernel.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mma.h"
#include "strata_emulator/launch.h"

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64"
#endif

// void strata_emu_switch(void** save_sp, void* load_sp): saves the callee-saved registers on the
// current stack, stores the stack pointer in *save_sp, switches to load_sp and restores from there.
// The floating-point control words (MXCSR, x87) are not switched: no kernel changes them, and
// fldcw alone made up three quarters of a switch.
asm(R"(
  .text
  .globl strata_emu_switch
  .type strata_emu_switch,@function
strata_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size strata_emu_switch,.-strata_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
extern "C" void strata_emu_switch(void** save_sp, void* load_sp);

namespace strata_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;  // the kernels' register arrays and WMMA fragments fit
constexpr int kMaxResident = 4;              // blocks resident at once
constexpr size_t kMaxResidentThreads = 4096;
constexpr size_t kGuardBytes = 64;           // after every shared-memory allocation
constexpr unsigned char kGuardByte = 0xA5;
constexpr unsigned char kGarbageByte = 0xFF;  // new shared memory: NaN as float, -1 as integers

enum class State : uint8_t { runnable, running, barrier, warp, exited };

struct Block;
struct Fiber {
  void* sp = nullptr;
  char* stack = nullptr;  // mapping base (guard page first)
  Block* block = nullptr;
  dim3 tid;
  unsigned linear = 0, lane = 0, warp = 0;
  State state = State::runnable;
  // Warp collective in progress
  Coll kind = Coll::syncwarp;
  const char* what = nullptr;
  unsigned mask = 0;
  int arg = 0, width = 32;
  unsigned char in[16], out[16];
};

struct WarpSlot {
  bool active = false;
  Coll kind = Coll::syncwarp;
  const char* what = nullptr;
  unsigned mask = 0, arrived = 0;
  size_t n = 0;
};
struct Warp {
  unsigned present = 0, exited = 0;
  Fiber* lanes[32] = {};
  std::vector<WarpSlot> slots;
};

struct SmemChunk {
  const void* tag;
  char* base;  // malloc'd
  char* data;  // aligned inside base
  size_t bytes;
};

struct Block {
  dim3 idx;
  std::vector<Fiber*> threads;
  std::vector<Warp> warps;
  unsigned live = 0, at_barrier = 0;
  std::vector<SmemChunk> statics;
  size_t static_bytes = 0;
  SmemChunk dynamic{nullptr, nullptr, nullptr, 0};
};

struct Rng {
  uint64_t s;
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return size_t((unsigned __int128)next() * n >> 64); }
};

uint64_t base_seed() {
  static const uint64_t seed = [] {
    const char* e = std::getenv("STRATA_EMU_SEED");
    return e && *e ? std::strtoull(e, nullptr, 0) : 0x5EED5EEDull;
  }();
  return seed;
}

// One grid being run on this host thread.
struct Grid {
  const LaunchConfig* cfg;
  void (*thread_main)(void*);
  void* ctx;
  uint64_t launch_no;
  uint64_t seed;
  Rng rng;
  unsigned threads_per_block;
  std::vector<Fiber*> runnable;
  std::vector<Block*> resident;
  void* sched_sp = nullptr;
  Fiber* current = nullptr;
};

// Per host thread: the grid running now, the stack pool, the launch counter.
struct HostThread {
  Grid* grid = nullptr;
  std::vector<char*> stacks;
  std::vector<Fiber*> fibers;
  uint64_t launches = 0;
  ~HostThread() {
    for (char* s : stacks) munmap(s, kStackBytes);
    for (Fiber* f : fibers) delete f;
  }
};
thread_local HostThread t_host;

char* take_stack() {
  if (!t_host.stacks.empty()) {
    char* s = t_host.stacks.back();
    t_host.stacks.pop_back();
    return s;
  }
  void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fault("cannot map a fiber stack");
  mprotect(p, size_t(getpagesize()), PROT_NONE);  // overflow faults instead of corrupting a neighbour
  return static_cast<char*>(p);
}
Fiber* take_fiber() {
  if (!t_host.fibers.empty()) {
    Fiber* f = t_host.fibers.back();
    t_host.fibers.pop_back();
    return f;
  }
  return new Fiber;
}

std::string dim_str(dim3 d) { return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")"; }

void set_builtins(const Grid& g, const Fiber& f) {
  threadIdx = f.tid;
  blockIdx = f.block->idx;
  blockDim = g.cfg->block;
  gridDim = g.cfg->grid;
}

// Back to the scheduler; returns when the scheduler picks this fiber again.
void switch_out() {
  Grid* g = t_host.grid;
  Fiber* f = g->current;
  strata_emu_switch(&f->sp, g->sched_sp);
}

void make_runnable(Grid& g, Fiber* f) {
  f->state = State::runnable;
  g.runnable.push_back(f);
}

[[noreturn]] void fiber_entry() {
  Grid* g = t_host.grid;
  g->thread_main(g->ctx);
  // Exit: this thread no longer counts at barriers (sm_70+); lanes waiting for it in a warp
  // collective can never complete.
  Fiber* f = g->current;
  Block* b = f->block;
  Warp& w = b->warps[f->warp];
  for (const WarpSlot& s : w.slots)
    if (s.active && (s.mask >> f->lane & 1))
      fault("thread exited while lanes of its warp wait for it in %s (mask %08x, arrived %08x)", s.what, s.mask,
            s.arrived);
  f->state = State::exited;
  w.exited |= 1u << f->lane;
  --b->live;
  if (b->at_barrier > 0 && b->at_barrier == b->live) {
    for (Fiber* t : b->threads)
      if (t->state == State::barrier) make_runnable(*g, t);
    b->at_barrier = 0;
  }
  switch_out();
  __builtin_unreachable();
}

void start_fiber(Fiber* f) {
  if (!f->stack) f->stack = take_stack();
  auto* top = reinterpret_cast<uint64_t*>(f->stack + kStackBytes);  // 16-byte aligned
  // Frame strata_emu_switch pops: r15..r12, rbx, rbp, then the return address.
  top[-1] = 0;  // fiber_entry's (never used) return address: rsp = 8 mod 16 at its entry
  top[-2] = reinterpret_cast<uint64_t>(&fiber_entry);
  for (int i = 3; i <= 8; ++i) top[-i] = 0;
  f->sp = &top[-8];
}

void free_smem(Block* b) {
  auto check = [&](const SmemChunk& c, const char* what) {
    for (size_t i = 0; i < kGuardBytes; ++i)
      if (static_cast<unsigned char>(c.data[c.bytes + i]) != kGuardByte)
        fault("block %s wrote %zu bytes past the end of %s shared memory (%zu bytes)", dim_str(b->idx).c_str(), i + 1,
              what, c.bytes);
    std::free(c.base);
  };
  for (const SmemChunk& c : b->statics) check(c, "a static");
  if (b->dynamic.base) check(b->dynamic, "the dynamic");
}

SmemChunk alloc_chunk(const void* tag, size_t bytes, size_t align) {
  if (align < 128) align = 128;  // the GPU's shared windows are at least this aligned
  char* base = static_cast<char*>(std::malloc(bytes + align + kGuardBytes));
  char* data = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(base) + align - 1) / align * align);
  std::memset(data, kGarbageByte, bytes);
  std::memset(data + bytes, kGuardByte, kGuardBytes);
  return {tag, base, data, bytes};
}

Block* admit_block(Grid& g, uint64_t linear) {
  const dim3 gd = g.cfg->grid, bd = g.cfg->block;
  auto* b = new Block;
  b->idx = dim3(unsigned(linear % gd.x), unsigned(linear / gd.x % gd.y), unsigned(linear / gd.x / gd.y));
  const unsigned n = g.threads_per_block;
  b->warps.resize((n + 31) / 32);
  b->threads.reserve(n);
  b->live = n;
  for (unsigned t = 0; t < n; ++t) {
    Fiber* f = take_fiber();
    f->block = b;
    f->tid = dim3(t % bd.x, t / bd.x % bd.y, t / bd.x / bd.y);
    f->linear = t;
    f->lane = t % 32;
    f->warp = t / 32;
    b->warps[f->warp].present |= 1u << f->lane;
    b->warps[f->warp].lanes[f->lane] = f;
    start_fiber(f);
    b->threads.push_back(f);
    make_runnable(g, f);
  }
  if (g.cfg->smem > 0) b->dynamic = alloc_chunk(nullptr, g.cfg->smem, 128);
  return b;
}

void retire_block(Grid& g, Block* b) {
  free_smem(b);
  for (Fiber* f : b->threads) {
    t_host.stacks.push_back(f->stack);
    f->stack = nullptr;
    t_host.fibers.push_back(f);
  }
  std::erase(g.resident, b);
  delete b;
}

const char* coll_name(const WarpSlot& s) { return s.what ? s.what : "a warp collective"; }

[[noreturn]] void deadlock(Grid& g) {
  std::string msg = "deadlock: no thread can run.";
  for (Block* b : g.resident) {
    unsigned at_bar = 0, at_warp = 0, exited = 0;
    std::string exited_list;
    for (Fiber* f : b->threads) {
      if (f->state == State::barrier) ++at_bar;
      if (f->state == State::warp) ++at_warp;
      if (f->state == State::exited) {
        if (++exited <= 4) exited_list += (exited_list.empty() ? "" : ", ") + std::to_string(f->linear);
      }
    }
    msg += "\n  block " + dim_str(b->idx) + ": " + std::to_string(at_bar) + " threads at __syncthreads, " +
           std::to_string(at_warp) + " in warp collectives, " + std::to_string(exited) + " exited";
    if (exited) msg += " (thread " + exited_list + (exited > 4 ? ", ..." : "") + ")";
    for (size_t w = 0; w < b->warps.size(); ++w)
      for (const WarpSlot& s : b->warps[w].slots)
        if (s.active) {
          char buf[160];
          std::snprintf(buf, sizeof buf, "\n    warp %zu waits in %s: mask %08x, arrived %08x, missing %08x", w,
                        coll_name(s), s.mask, s.arrived, s.mask & ~s.arrived);
          msg += buf;
        }
  }
  g.current = nullptr;
  fault("%s", msg.c_str());
}

// Completes a warp collective whose lanes have all arrived: computes every lane's result.
void complete(Grid& g, Warp& w, WarpSlot& s) {
  for (unsigned l = 0; l < 32; ++l) {
    if (!(s.mask >> l & 1)) continue;
    Fiber* f = w.lanes[l];
    int src = int(l);
    const int width = f->width;
    switch (s.kind) {
      case Coll::shfl:
      case Coll::shfl_up:
      case Coll::shfl_down:
      case Coll::shfl_xor: {
        if (width <= 0 || width > 32 || (width & (width - 1)))
          fault("%s with width %d (a power of two up to 32)", s.what, width);
        const int base = int(l) & ~(width - 1);
        if (s.kind == Coll::shfl) src = base + (f->arg & (width - 1));
        if (s.kind == Coll::shfl_up) src = int(l) - f->arg >= base ? int(l) - f->arg : int(l);
        if (s.kind == Coll::shfl_down) src = int(l) + f->arg < base + width ? int(l) + f->arg : int(l);
        if (s.kind == Coll::shfl_xor) {
          const int x = int(l) ^ f->arg;
          src = x >= base && x < base + width ? x : int(l);
        }
        if (src < 0 || src > 31 || !(s.mask >> src & 1)) {
          g.current = f;
          fault("%s: lane %u reads lane %d, which is not in the mask %08x (undefined result)", s.what, l, src, s.mask);
        }
        std::memcpy(f->out, w.lanes[src]->in, s.n);
        break;
      }
      case Coll::ballot:
      case Coll::any:
      case Coll::all: {
        unsigned bits = 0;
        for (unsigned m = 0; m < 32; ++m)
          if (s.mask >> m & 1) {
            int p;
            std::memcpy(&p, w.lanes[m]->in, sizeof p);
            if (p) bits |= 1u << m;
          }
        if (s.kind == Coll::ballot) std::memcpy(f->out, &bits, sizeof bits);
        const int r = s.kind == Coll::any ? bits != 0 : bits == s.mask;
        if (s.kind != Coll::ballot) std::memcpy(f->out, &r, sizeof r);
        break;
      }
      case Coll::syncwarp:
      case Coll::wmma:
        break;
    }
  }
  for (unsigned l = 0; l < 32; ++l)
    if (s.mask >> l & 1) make_runnable(g, w.lanes[l]);
  s.active = false;
}

}  // namespace

void fault(const char* fmt, ...) {
  char reason[4096];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  const Grid* g = t_host.grid;
  if (g) {
    std::string where;
    if (g->current)
      where = " block " + dim_str(g->current->block->idx) + " thread " + dim_str(g->current->tid);
    std::fprintf(stderr,
                 "strata CUDA emulator: fault in kernel %s (grid %s, block %s)%s: %s\n"
                 "  seed %llu, launch %llu on this host thread (replay: STRATA_EMU_SEED=%llu)\n",
                 g->cfg->name, dim_str(g->cfg->grid).c_str(), dim_str(g->cfg->block).c_str(), where.c_str(), reason,
                 (unsigned long long)g->seed, (unsigned long long)g->launch_no, (unsigned long long)base_seed());
  } else {
    std::fprintf(stderr, "strata CUDA emulator: fault: %s\n", reason);
  }
  std::fflush(stderr);
  std::abort();
}

bool in_kernel() { return t_host.grid && t_host.grid->current; }
unsigned lane_id() { return in_kernel() ? t_host.grid->current->lane : 0; }

bool validate_launch(const LaunchConfig& c) {
  const dim3 b = c.block, g = c.grid;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
      threads > kMaxThreadsPerBlock || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    set_last_error(cudaErrorInvalidConfiguration);
    return false;
  }
  if (c.smem > max_dynamic_smem(c.kernel) || c.smem > kSmemPerBlockOptin) {
    set_last_error(cudaErrorInvalidValue);
    return false;
  }
  return true;
}

void run_grid(const LaunchConfig& cfg, void (*thread_main)(void*), void* ctx) {
  if (t_host.grid) fault("kernel %s launched from inside kernel %s (no dynamic parallelism)", cfg.name, t_host.grid->cfg->name);
  Grid g;
  g.cfg = &cfg;
  g.thread_main = thread_main;
  g.ctx = ctx;
  g.launch_no = t_host.launches++;
  g.seed = base_seed() ^ (g.launch_no * 0xD1B54A32D192ED03ull);
  g.rng.s = g.seed;
  g.threads_per_block = cfg.block.x * cfg.block.y * cfg.block.z;
  const uint64_t nblocks = uint64_t(cfg.grid.x) * cfg.grid.y * cfg.grid.z;
  size_t max_resident = std::max<size_t>(1, std::min<size_t>(kMaxResident, kMaxResidentThreads / g.threads_per_block));
  // Blocks are admitted in a random order: a random permutation drawn lazily (swap-remove).
  std::vector<uint32_t> pending;
  pending.reserve(nblocks);
  for (uint64_t i = nblocks; i-- > 0;) pending.push_back(uint32_t(i));
  t_host.grid = &g;
  const dim3 saved[4] = {threadIdx, blockIdx, blockDim, gridDim};
  while (true) {
    while (g.resident.size() < max_resident && !pending.empty()) {
      const size_t i = g.rng.below(pending.size());
      const uint32_t id = pending[i];
      pending[i] = pending.back();
      pending.pop_back();
      g.resident.push_back(admit_block(g, id));
    }
    if (g.runnable.empty()) {
      if (g.resident.empty()) break;
      deadlock(g);
    }
    const size_t i = g.rng.below(g.runnable.size());
    Fiber* f = g.runnable[i];
    g.runnable[i] = g.runnable.back();
    g.runnable.pop_back();
    f->state = State::running;
    g.current = f;
    set_builtins(g, *f);
    strata_emu_switch(&g.sched_sp, f->sp);
    g.current = nullptr;
    if (f->state == State::exited && f->block->live == 0) retire_block(g, f->block);
  }
  threadIdx = saved[0], blockIdx = saved[1], blockDim = saved[2], gridDim = saved[3];
  t_host.grid = nullptr;
}

void syncthreads() {
  Grid* g = t_host.grid;
  if (!g || !g->current) fault("__syncthreads outside a kernel");
  Fiber* f = g->current;
  Block* b = f->block;
  f->state = State::barrier;
  if (++b->at_barrier == b->live) {
    for (Fiber* t : b->threads)
      if (t->state == State::barrier) make_runnable(*g, t);
    b->at_barrier = 0;
  }
  switch_out();
}

void maybe_yield() {
  Grid* g = t_host.grid;
  if (!g || !g->current || (g->rng.next() & 3) != 0) return;
  make_runnable(*g, g->current);
  switch_out();
}

void warp_collective(Coll kind, const char* what, unsigned mask, const void* in, size_t n, int arg, int width,
                     void* out) {
  Grid* g = t_host.grid;
  if (!g || !g->current) fault("%s outside a kernel", what);
  Fiber* f = g->current;
  Block* b = f->block;
  Warp& w = b->warps[f->warp];
  const unsigned bit = 1u << f->lane;
  if (!(mask & bit)) fault("%s with mask %08x, which does not include the calling lane %u", what, mask, f->lane);
  if (mask & ~w.present)
    fault("%s with mask %08x names lanes %08x that do not exist (the block has %u threads)", what, mask, mask & ~w.present,
          g->threads_per_block);
  if (mask & w.exited)
    fault("%s with mask %08x names lanes %08x that have exited (they can never arrive)", what, mask, mask & w.exited);
  WarpSlot* slot = nullptr;
  for (WarpSlot& s : w.slots)
    if (s.active && (s.mask & mask)) {
      if (s.mask != mask)
        fault("lanes of warp %u meet with different masks: %s with %08x while %s with %08x waits (arrived %08x)", f->warp,
              what, mask, coll_name(s), s.mask, s.arrived);
      if (s.kind != kind || s.what != what)
        fault("lanes of warp %u meet at different collectives: %s while %s waits (mask %08x, arrived %08x)", f->warp,
              what, coll_name(s), s.mask, s.arrived);
      slot = &s;
      break;
    }
  if (!slot) {
    for (WarpSlot& s : w.slots)
      if (!s.active) slot = &s;
    if (!slot) slot = &w.slots.emplace_back();
    *slot = WarpSlot{true, kind, what, mask, 0, n};
  }
  if (n > sizeof f->in) fault("%s of a %zu-byte value", what, n);
  if (n) std::memcpy(f->in, in, n);
  f->arg = arg;
  f->width = width;
  f->state = State::warp;
  slot->arrived |= bit;
  if (slot->arrived == slot->mask) complete(*g, w, *slot);
  switch_out();
  if (out && n) std::memcpy(out, f->out, kind == Coll::ballot || kind == Coll::any || kind == Coll::all ? 4 : n);
}

void* shared_static_raw(const void* tag, size_t bytes, size_t align) {
  Grid* g = t_host.grid;
  if (!g || !g->current) fault("shared memory outside a kernel");
  Block* b = g->current->block;
  for (const SmemChunk& c : b->statics)
    if (c.tag == tag) return c.data;
  b->static_bytes += bytes;
  if (b->static_bytes > kSmemStaticMax)
    fault("static shared memory of %zu bytes exceeds the %zu bytes a block may declare", b->static_bytes, kSmemStaticMax);
  if (b->static_bytes + g->cfg->smem > kSmemPerBlockOptin)
    fault("shared memory of %zu bytes (static) + %zu (dynamic) exceeds the %zu bytes of a block", b->static_bytes,
          g->cfg->smem, kSmemPerBlockOptin);
  b->statics.push_back(alloc_chunk(tag, bytes, align));
  return b->statics.back().data;
}

void* shared_dynamic_raw() {
  Grid* g = t_host.grid;
  if (!g || !g->current) fault("shared memory outside a kernel");
  return g->current->block->dynamic.data;  // nullptr when the launch asked for none
}

}  // namespace strata_emu

void nvcuda::wmma::detail::check_pointer(const char* op, const void* p, unsigned ldm, size_t elem_bytes) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    strata_emu::fault("wmma::%s with pointer %p, which is not 32-byte (256-bit) aligned", op, p);
  if ((size_t(ldm) * elem_bytes) % 16 != 0)
    strata_emu::fault("wmma::%s with ldm %u: not a multiple of %zu elements (16 bytes)", op, ldm, 16 / elem_bytes);
}
