// CUDA SSM kernels vs their CPU twins: causal conv1d (forward, backward, step, state from a
// sequence), Mamba-1 selective scan (forward with h0 / h_last, backward, step; N from 3 to 200 so
// every lanes-per-channel layout runs; T across several backward segments and partial tiles;
// channels not a multiple of the block's) and Mamba-2 SSD (forward with s0 / s_last, backward, step;
// chunks longer than one 64-row tile, P and N across several tiles, a partial last chunk, groups).
// Every backward also runs twice and must be bitwise identical (no float atomics). Skips visibly
// without a device. fp32 tolerances: 2e-6 abs + 2e-5 rel elementwise (conv), 2e-5 abs + 1e-4 rel on
// scan / SSD outputs, 1e-4 abs + 2e-4 rel on gradients (sums over T or over channels, in another
// order than the CPU's), scaled by the magnitude of each output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/device_cuda.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/scan.h"
#include "kernels/cpu/ssd.h"
#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/scan.h"
#include "kernels/cuda/ssd.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

#define SKIP_WITHOUT_DEVICE() \
  if (!cuda::device_available()) GTEST_SKIP() << cuda::unavailable_reason()

// A device copy of a host vector (or zeroed storage), freed on scope exit.
template <class T>
struct DevVec {
  T* p = nullptr;
  size_t n = 0;
  explicit DevVec(size_t n_) : p(static_cast<T*>(cuda::alloc(n_ * sizeof(T)))), n(n_) {
    cuda::memset_zero(p, n * sizeof(T));
  }
  explicit DevVec(const std::vector<T>& h) : DevVec(h.size()) { cuda::copy_to_device(p, h.data(), n * sizeof(T)); }
  DevVec(const DevVec&) = delete;
  DevVec& operator=(const DevVec&) = delete;
  ~DevVec() { cuda::free(p); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    cuda::copy_to_host(h.data(), p, n * sizeof(T));
    return h;
  }
};

// Device pointer of an optional input (empty vector = absent).
template <class T>
const T* opt(const DevVec<T>& d, const std::vector<T>& h) {
  return h.empty() ? nullptr : d.p;
}

// |a - b| <= atol * scale + rtol |b| with scale = max |b| (at least 1): gradients of long sums are
// compared relative to their magnitude.
void close_scaled(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol,
                  const std::string& what) {
  double m = 1.0;
  for (float v : want) m = std::max(m, double(std::abs(v)));
  st::expect_close(got, want, atol * m, rtol, what);
}

void expect_bitwise(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements differ between two identical backward runs";
}

// ---------------------------------------------------------------------------------------------------
// conv1d

struct ConvCase {
  int64_t B, T, C, K;
  bool bias, silu;
};

TEST(CudaConv1d, ForwardBackwardMatchCpu) {
  SKIP_WITHOUT_DEVICE();
  // BT = 600 spans three dw partial chunks; C = 70 is not a multiple of the 32-channel tile; T < K - 1.
  for (const ConvCase c : {ConvCase{2, 300, 70, 4, true, true}, ConvCase{3, 17, 33, 4, false, false},
                           ConvCase{1, 2, 5, 4, true, true}, ConvCase{2, 40, 8, 1, true, false},
                           ConvCase{1, 25, 12, 7, false, true}}) {
    std::printf("conv1d B=%ld T=%ld C=%ld K=%ld bias=%d silu=%d\n", long(c.B), long(c.T), long(c.C), long(c.K),
                int(c.bias), int(c.silu));
    const size_t n = size_t(c.B * c.T * c.C);
    const auto x = st::randn(n, 11), w = st::randn(size_t(c.C * c.K), 12, 0.5f), dy = st::randn(n, 14);
    const auto bias = c.bias ? st::randn(size_t(c.C), 13) : std::vector<float>{};
    std::vector<float> y(n), dx(n), dw = st::randn(size_t(c.C * c.K), 15), db = st::randn(size_t(c.C), 16);
    const std::vector<float> dw0 = dw, db0 = db;
    cpu::conv1d_causal_forward(y.data(), x.data(), w.data(), c.bias ? bias.data() : nullptr, c.B, c.T, c.C, c.K,
                               c.silu);
    cpu::conv1d_causal_backward(dx.data(), dw.data(), c.bias ? db.data() : nullptr, dy.data(), x.data(), w.data(),
                                c.bias ? bias.data() : nullptr, c.B, c.T, c.C, c.K, c.silu);

    DevVec<float> gx(x), gw(w), gb(bias), gdy(dy), gy(n), gdx(n), gdw(dw0), gdb(db0);
    cuda::conv1d_causal_forward(gy.p, gx.p, gw.p, opt(gb, bias), c.B, c.T, c.C, c.K, c.silu);
    st::expect_close(gy.host(), y, 2e-6, 2e-5, "y");
    cuda::conv1d_causal_backward(gdx.p, gdw.p, c.bias ? gdb.p : nullptr, gdy.p, gx.p, gw.p, opt(gb, bias), c.B, c.T,
                                 c.C, c.K, c.silu);
    st::expect_close(gdx.host(), dx, 2e-6, 2e-5, "dx");
    close_scaled(gdw.host(), dw, 2e-6, 1e-5, "dw (accumulated)");
    if (c.bias) close_scaled(gdb.host(), db, 2e-6, 1e-5, "dbias (accumulated)");
  }
}

TEST(CudaConv1d, StepAndStateMatchCpu) {
  SKIP_WITHOUT_DEVICE();
  const int64_t B = 3, C = 37, K = 4, T = 9;
  const auto x = st::randn(size_t(B * T * C), 21), w = st::randn(size_t(C * K), 22), bias = st::randn(size_t(C), 23);
  std::vector<float> state(size_t(B * C * (K - 1)));
  cpu::conv1d_state_from_sequence(state.data(), x.data(), B, T, C, K);
  DevVec<float> gx(x), gstate(state.size());
  cuda::conv1d_state_from_sequence(gstate.p, gx.p, B, T, C, K);
  st::expect_close(gstate.host(), state, 0, 0, "state_from_sequence");
  // Short sequence: the state is zero-padded at the front.
  std::vector<float> state2(state.size());
  DevVec<float> gstate2(state.size());
  cpu::conv1d_state_from_sequence(state2.data(), x.data(), B, 2, C, K);
  cuda::conv1d_state_from_sequence(gstate2.p, gx.p, B, 2, C, K);
  st::expect_close(gstate2.host(), state2, 0, 0, "state_from_sequence (T < K-1)");

  for (int step = 0; step < 5; ++step) {
    const auto xt = st::randn(size_t(B * C), 30 + step);
    std::vector<float> y(size_t(B * C));
    cpu::conv1d_causal_step(y.data(), state.data(), xt.data(), w.data(), bias.data(), B, C, K, true);
    DevVec<float> gxt(xt), gy(y.size()), gw(w), gb(bias);
    cuda::conv1d_causal_step(gy.p, gstate.p, gxt.p, gw.p, gb.p, B, C, K, true);
    st::expect_close(gy.host(), y, 2e-6, 2e-5, "step y");
    st::expect_close(gstate.host(), state, 0, 0, "step state");
  }
}

// ---------------------------------------------------------------------------------------------------
// Mamba-1 selective scan

struct ScanCase {
  int64_t B, T, D, N;
  bool z, h0, bias, Dskip;
};

struct ScanInputs {
  std::vector<float> u, delta, bias, A, Bm, Cm, Ds, z, h0;
};

ScanInputs scan_inputs(const ScanCase& c, uint64_t seed) {
  const size_t BTD = size_t(c.B * c.T * c.D), BTN = size_t(c.B * c.T * c.N);
  ScanInputs in;
  in.u = st::randn(BTD, seed);
  in.delta = st::randn(BTD, seed + 1, 0.5f);
  if (c.bias) in.bias = st::uniform(size_t(c.D), seed + 2, -3.0f, 0.0f);  // dt in a trained model's range
  in.A = st::uniform(size_t(c.D * c.N), seed + 3, -2.0f, -0.2f);
  in.Bm = st::randn(BTN, seed + 4);
  in.Cm = st::randn(BTN, seed + 5);
  if (c.Dskip) in.Ds = st::randn(size_t(c.D), seed + 6);
  if (c.z) in.z = st::randn(BTD, seed + 7);
  if (c.h0) in.h0 = st::randn(size_t(c.B * c.D * c.N), seed + 8);
  return in;
}

const float* ptr(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

struct ScanDev {
  DevVec<float> u, delta, bias, A, Bm, Cm, Ds, z, h0;
  explicit ScanDev(const ScanInputs& in)
      : u(in.u), delta(in.delta), bias(in.bias), A(in.A), Bm(in.Bm), Cm(in.Cm), Ds(in.Ds), z(in.z), h0(in.h0) {}
};

void print_scan(const char* what, const ScanCase& c) {
  std::printf("selective scan %s B=%ld T=%ld D=%ld N=%ld z=%d h0=%d bias=%d D=%d\n", what, long(c.B), long(c.T),
              long(c.D), long(c.N), int(c.z), int(c.h0), int(c.bias), int(c.Dskip));
}

TEST(CudaSelectiveScan, ForwardMatchesCpu) {
  SKIP_WITHOUT_DEVICE();
  // N = 3 / 16 / 64 / 200: 1, 4, 16, 32 lanes per channel (4 or 8 states each); D = 45 is not a
  // multiple of the channels per block; T = 1 and T not a multiple of the 16-token tile.
  for (const ScanCase c : {ScanCase{2, 45, 45, 16, true, true, true, true}, ScanCase{1, 1, 7, 16, true, false, true, true},
                           ScanCase{2, 33, 13, 3, false, true, false, false}, ScanCase{1, 20, 9, 64, true, true, true, false},
                           ScanCase{2, 18, 5, 200, false, false, true, true}}) {
    print_scan("forward", c);
    const ScanInputs in = scan_inputs(c, 100);
    std::vector<float> y(in.u.size()), hl(size_t(c.B * c.D * c.N));
    cpu::selective_scan_forward(y.data(), hl.data(), in.u.data(), in.delta.data(), ptr(in.bias), in.A.data(),
                                in.Bm.data(), in.Cm.data(), ptr(in.Ds), ptr(in.z), ptr(in.h0), c.B, c.T, c.D, c.N);
    ScanDev g(in);
    DevVec<float> gy(y.size()), ghl(hl.size());
    cuda::selective_scan_forward(gy.p, ghl.p, g.u.p, g.delta.p, opt(g.bias, in.bias), g.A.p, g.Bm.p, g.Cm.p,
                                 opt(g.Ds, in.Ds), opt(g.z, in.z), opt(g.h0, in.h0), c.B, c.T, c.D, c.N);
    close_scaled(gy.host(), y, 2e-5, 1e-4, "y");
    close_scaled(ghl.host(), hl, 2e-5, 1e-4, "h_last");
  }
}

TEST(CudaSelectiveScan, BackwardMatchesCpuAndIsDeterministic) {
  SKIP_WITHOUT_DEVICE();
  // T = 150: three 64-token segments, the last partial, and a partial 8-token sub-chunk; D = 45 gives
  // two channel groups at N = 16 (their dB / dC partials are added by the reduce kernel).
  for (const ScanCase c : {ScanCase{2, 150, 45, 16, true, false, true, true}, ScanCase{1, 64, 6, 5, false, false, false, false},
                           ScanCase{2, 9, 3, 64, true, false, true, true}, ScanCase{1, 70, 4, 130, true, false, true, true}}) {
    print_scan("backward", c);
    const ScanInputs in = scan_inputs(c, 200);
    const size_t BTD = in.u.size(), BTN = in.Bm.size(), DN = size_t(c.D * c.N);
    const auto dy = st::randn(BTD, 299);
    std::vector<float> du(BTD), dd(BTD), dB(BTN), dC(BTN), dz(BTD);
    // Parameter grads start non-zero: they accumulate.
    std::vector<float> dA = st::randn(DN, 290), dD = st::randn(size_t(c.D), 291), dbias = st::randn(size_t(c.D), 292);
    const std::vector<float> dA0 = dA, dD0 = dD, dbias0 = dbias;
    cpu::selective_scan_backward(du.data(), dd.data(), dA.data(), dB.data(), dC.data(), c.Dskip ? dD.data() : nullptr,
                                 c.bias ? dbias.data() : nullptr, c.z ? dz.data() : nullptr, dy.data(), in.u.data(),
                                 in.delta.data(), ptr(in.bias), in.A.data(), in.Bm.data(), in.Cm.data(), ptr(in.Ds),
                                 ptr(in.z), c.B, c.T, c.D, c.N);
    ScanDev g(in);
    DevVec<float> gdy(dy);
    std::vector<float> first[8];
    for (int run = 0; run < 2; ++run) {
      DevVec<float> gdu(BTD), gdd(BTD), gdB(BTN), gdC(BTN), gdz(BTD), gdA(dA0), gdD(dD0), gdbias(dbias0);
      cuda::selective_scan_backward(gdu.p, gdd.p, gdA.p, gdB.p, gdC.p, c.Dskip ? gdD.p : nullptr,
                                    c.bias ? gdbias.p : nullptr, c.z ? gdz.p : nullptr, gdy.p, g.u.p, g.delta.p,
                                    opt(g.bias, in.bias), g.A.p, g.Bm.p, g.Cm.p, opt(g.Ds, in.Ds), opt(g.z, in.z), c.B,
                                    c.T, c.D, c.N);
      std::vector<float> got[8] = {gdu.host(), gdd.host(), gdA.host(), gdB.host(),
                                   gdC.host(), gdD.host(), gdbias.host(), gdz.host()};
      if (run == 0) {
        close_scaled(got[0], du, 1e-4, 2e-4, "du");
        close_scaled(got[1], dd, 1e-4, 2e-4, "ddelta");
        close_scaled(got[2], dA, 1e-4, 2e-4, "dA (accumulated)");
        close_scaled(got[3], dB, 1e-4, 2e-4, "dB");
        close_scaled(got[4], dC, 1e-4, 2e-4, "dC");
        close_scaled(got[5], dD, 1e-4, 2e-4, "dDskip (accumulated)");
        close_scaled(got[6], dbias, 1e-4, 2e-4, "ddelta_bias (accumulated)");
        if (c.z) close_scaled(got[7], dz, 1e-4, 2e-4, "dz");
        for (int i = 0; i < 8; ++i) first[i] = got[i];
      } else {
        for (int i = 0; i < 8; ++i) expect_bitwise(got[i], first[i], "scan backward output " + std::to_string(i));
      }
    }
  }
}

TEST(CudaSelectiveScan, StepMatchesCpu) {
  SKIP_WITHOUT_DEVICE();
  for (const int64_t N : {16, 3, 100}) {
    const int64_t B = 2, D = 19;
    std::printf("selective scan step B=%ld D=%ld N=%ld\n", long(B), long(D), long(N));
    auto h = st::randn(size_t(B * D * N), 400);
    const auto bias = st::uniform(size_t(D), 401, -3.0f, 0.0f), A = st::uniform(size_t(D * N), 402, -2.0f, -0.2f),
               Ds = st::randn(size_t(D), 403);
    DevVec<float> gh(h), gbias(bias), gA(A), gDs(Ds);
    for (int t = 0; t < 6; ++t) {
      const auto u = st::randn(size_t(B * D), 410 + t), delta = st::randn(size_t(B * D), 420 + t, 0.5f),
                 Bm = st::randn(size_t(B * N), 430 + t), Cm = st::randn(size_t(B * N), 440 + t),
                 z = st::randn(size_t(B * D), 450 + t);
      const bool with_z = t % 2 == 0;
      std::vector<float> y(size_t(B * D));
      cpu::selective_scan_step(y.data(), h.data(), u.data(), delta.data(), bias.data(), A.data(), Bm.data(),
                               Cm.data(), Ds.data(), with_z ? z.data() : nullptr, B, D, N);
      DevVec<float> gu(u), gdelta(delta), gB(Bm), gC(Cm), gz(z), gy(y.size());
      cuda::selective_scan_step(gy.p, gh.p, gu.p, gdelta.p, gbias.p, gA.p, gB.p, gC.p, gDs.p, with_z ? gz.p : nullptr,
                                B, D, N);
      close_scaled(gy.host(), y, 2e-5, 1e-4, "step y");
      close_scaled(gh.host(), h, 2e-5, 1e-4, "step h");
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Mamba-2 SSD

struct SsdCase {
  int64_t B, T, H, P, G, N, chunk;
};

struct SsdInputs {
  std::vector<float> x, dt, dt_bias, A, Bm, Cm, Ds, s0;
};

SsdInputs ssd_inputs(const SsdCase& c, uint64_t seed) {
  SsdInputs in;
  in.x = st::randn(size_t(c.B * c.T * c.H * c.P), seed);
  in.dt = st::randn(size_t(c.B * c.T * c.H), seed + 1, 0.5f);
  in.dt_bias = st::uniform(size_t(c.H), seed + 2, -3.0f, -1.0f);
  in.A = st::uniform(size_t(c.H), seed + 3, -2.0f, -0.3f);
  in.Bm = st::randn(size_t(c.B * c.T * c.G * c.N), seed + 4);
  in.Cm = st::randn(size_t(c.B * c.T * c.G * c.N), seed + 5);
  in.Ds = st::randn(size_t(c.H), seed + 6);
  in.s0 = st::randn(size_t(c.B * c.H * c.P * c.N), seed + 7);
  return in;
}

void print_ssd(const char* what, const SsdCase& c) {
  std::printf("ssd %s B=%ld T=%ld H=%ld P=%ld G=%ld N=%ld chunk=%ld\n", what, long(c.B), long(c.T), long(c.H),
              long(c.P), long(c.G), long(c.N), long(c.chunk));
}

// chunk 80 > the 64-row tile (two row tiles, the diagonal tile pair); P = 70 and N = 130 span several
// tiles; T = 100 leaves a partial last chunk; G = 2 groups of 2 heads; chunk > T.
const SsdCase kSsdCases[] = {{2, 100, 4, 16, 2, 20, 32}, {1, 170, 2, 70, 1, 130, 80}, {2, 37, 3, 8, 3, 8, 64},
                             {1, 1, 2, 4, 1, 4, 16}};

TEST(CudaSsd, ForwardMatchesCpu) {
  SKIP_WITHOUT_DEVICE();
  for (const SsdCase& c : kSsdCases) {
    for (const bool with_s0 : {false, true}) {
      print_ssd(with_s0 ? "forward (s0)" : "forward", c);
      const SsdInputs in = ssd_inputs(c, 500);
      std::vector<float> y(in.x.size()), sl(in.s0.size());
      cpu::ssd_forward(y.data(), sl.data(), in.x.data(), in.dt.data(), in.dt_bias.data(), in.A.data(), in.Bm.data(),
                       in.Cm.data(), in.Ds.data(), with_s0 ? in.s0.data() : nullptr, c.B, c.T, c.H, c.P, c.G, c.N,
                       c.chunk);
      DevVec<float> gx(in.x), gdt(in.dt), gbias(in.dt_bias), gA(in.A), gB(in.Bm), gC(in.Cm), gD(in.Ds), gs0(in.s0),
          gy(y.size()), gsl(sl.size());
      cuda::ssd_forward(gy.p, gsl.p, gx.p, gdt.p, gbias.p, gA.p, gB.p, gC.p, gD.p, with_s0 ? gs0.p : nullptr, c.B, c.T,
                        c.H, c.P, c.G, c.N, c.chunk);
      close_scaled(gy.host(), y, 2e-5, 1e-4, "y");
      close_scaled(gsl.host(), sl, 2e-5, 1e-4, "s_last");
    }
  }
}

TEST(CudaSsd, BackwardMatchesCpuAndIsDeterministic) {
  SKIP_WITHOUT_DEVICE();
  for (const SsdCase& c : kSsdCases) {
    print_ssd("backward", c);
    const SsdInputs in = ssd_inputs(c, 600);
    const size_t nx = in.x.size(), nt = in.dt.size(), nb = in.Bm.size();
    const auto dy = st::randn(nx, 699);
    std::vector<float> dx(nx), ddt(nt), dB(nb), dC(nb);
    std::vector<float> dA = st::randn(size_t(c.H), 690), dD = st::randn(size_t(c.H), 691),
                       dbias = st::randn(size_t(c.H), 692);
    const std::vector<float> dA0 = dA, dD0 = dD, dbias0 = dbias;
    cpu::ssd_backward(dx.data(), ddt.data(), dA.data(), dB.data(), dC.data(), dD.data(), dbias.data(), dy.data(),
                      in.x.data(), in.dt.data(), in.dt_bias.data(), in.A.data(), in.Bm.data(), in.Cm.data(),
                      in.Ds.data(), c.B, c.T, c.H, c.P, c.G, c.N, c.chunk);
    DevVec<float> gx(in.x), gdt(in.dt), gbias(in.dt_bias), gA(in.A), gB(in.Bm), gC(in.Cm), gD(in.Ds), gdy(dy);
    std::vector<float> first[7];
    for (int run = 0; run < 2; ++run) {
      DevVec<float> gdx(nx), gddt(nt), gdB(nb), gdC(nb), gdA(dA0), gdD(dD0), gdbias(dbias0);
      cuda::ssd_backward(gdx.p, gddt.p, gdA.p, gdB.p, gdC.p, gdD.p, gdbias.p, gdy.p, gx.p, gdt.p, gbias.p, gA.p, gB.p,
                         gC.p, gD.p, c.B, c.T, c.H, c.P, c.G, c.N, c.chunk);
      std::vector<float> got[7] = {gdx.host(), gddt.host(), gdB.host(), gdC.host(),
                                   gdA.host(), gdD.host(),  gdbias.host()};
      if (run == 0) {
        close_scaled(got[0], dx, 1e-4, 2e-4, "dx");
        close_scaled(got[1], ddt, 1e-4, 2e-4, "ddt_raw");
        close_scaled(got[2], dB, 1e-4, 2e-4, "dB");
        close_scaled(got[3], dC, 1e-4, 2e-4, "dC");
        close_scaled(got[4], dA, 1e-4, 2e-4, "dA (accumulated)");
        close_scaled(got[5], dD, 1e-4, 2e-4, "dDskip (accumulated)");
        close_scaled(got[6], dbias, 1e-4, 2e-4, "ddt_bias (accumulated)");
        for (int i = 0; i < 7; ++i) first[i] = got[i];
      } else {
        for (int i = 0; i < 7; ++i) expect_bitwise(got[i], first[i], "ssd backward output " + std::to_string(i));
      }
    }
  }
}

TEST(CudaSsd, StepMatchesCpu) {
  SKIP_WITHOUT_DEVICE();
  const int64_t B = 2, H = 4, P = 9, G = 2, N = 40;
  auto state = st::randn(size_t(B * H * P * N), 700);
  const auto bias = st::uniform(size_t(H), 701, -3.0f, -1.0f), A = st::uniform(size_t(H), 702, -2.0f, -0.3f),
             Ds = st::randn(size_t(H), 703);
  DevVec<float> gs(state), gbias(bias), gA(A), gD(Ds);
  for (int t = 0; t < 5; ++t) {
    const auto x = st::randn(size_t(B * H * P), 710 + t), dt = st::randn(size_t(B * H), 720 + t, 0.5f),
               Bm = st::randn(size_t(B * G * N), 730 + t), Cm = st::randn(size_t(B * G * N), 740 + t);
    std::vector<float> y(x.size());
    cpu::ssd_step(y.data(), state.data(), x.data(), dt.data(), bias.data(), A.data(), Bm.data(), Cm.data(), Ds.data(),
                  B, H, P, G, N);
    DevVec<float> gx(x), gdt(dt), gB(Bm), gC(Cm), gy(y.size());
    cuda::ssd_step(gy.p, gs.p, gx.p, gdt.p, gbias.p, gA.p, gB.p, gC.p, gD.p, B, H, P, G, N);
    close_scaled(gy.host(), y, 2e-5, 1e-4, "step y");
    close_scaled(gs.host(), state, 2e-5, 1e-4, "step state");
  }
}

// The decode step continues a prefill: forward over T tokens with s_last, then steps, equals the
// forward over T + steps tokens (CUDA only; the CPU twins have the same test in test_ssd.cpp).
TEST(CudaSsd, ForwardThenStepsEqualsLongerForward) {
  SKIP_WITHOUT_DEVICE();
  const SsdCase c{1, 40, 2, 8, 1, 16, 16};
  const int64_t extra = 3, T2 = c.T + extra;
  const SsdCase c2{c.B, T2, c.H, c.P, c.G, c.N, c.chunk};
  const SsdInputs in = ssd_inputs(c2, 800);
  DevVec<float> gx(in.x), gdt(in.dt), gbias(in.dt_bias), gA(in.A), gB(in.Bm), gC(in.Cm), gD(in.Ds);
  DevVec<float> gy_full(in.x.size()), gy(in.x.size()), gs(size_t(c.H * c.P * c.N));
  cuda::ssd_forward(gy_full.p, nullptr, gx.p, gdt.p, gbias.p, gA.p, gB.p, gC.p, gD.p, nullptr, 1, T2, c.H, c.P, c.G,
                    c.N, c.chunk);
  cuda::ssd_forward(gy.p, gs.p, gx.p, gdt.p, gbias.p, gA.p, gB.p, gC.p, gD.p, nullptr, 1, c.T, c.H, c.P, c.G, c.N,
                    c.chunk);
  const int64_t HP = c.H * c.P, GN = c.G * c.N;
  for (int64_t t = c.T; t < T2; ++t)
    cuda::ssd_step(gy.p + t * HP, gs.p, gx.p + t * HP, gdt.p + t * c.H, gbias.p, gA.p, gB.p + t * GN, gC.p + t * GN,
                   gD.p, 1, c.H, c.P, c.G, c.N);
  close_scaled(gy.host(), gy_full.host(), 2e-5, 1e-4, "forward + steps vs forward");
}

}  // namespace
