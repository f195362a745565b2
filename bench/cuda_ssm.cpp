// CUDA SSM kernel times: Mamba-1 selective scan and Mamba-2 SSD, forward and backward, on training
// shapes of a ~1B-parameter model (B*T = 16k tokens; Mamba-1 d_inner 2048 with N = 16; Mamba-2 32
// heads of 64 channels, one group, N = 128, chunk 256), and their decode steps (B = 8).
//
//   build/bench/cuda_ssm [--json] [--iters N] [--T 1024,4096] [--ops scan,ssd]
//
// Reported per call: ms, and GB/s of the activations each call must read and write at least (the
// kernels are bound by memory and by the sequential recurrence, not by FLOPs). With --json every
// result is one JSON line (bench/cuda_vs_torch.py reads them). In a build without CUDA it says so
// and exits 0.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <fmt/format.h>

#include "bench_args.h"

#ifdef STRATA_WITH_CUDA
#include "core/device_cuda.h"
#include "core/rng.h"
#include "kernels/cuda/scan.h"
#include "kernels/cuda/ssd.h"
#endif

namespace {

using strata::bench::parse_list;

struct Options {
  bool json = false;
  int iters = 10;
  std::vector<long> Ts{1024, 2048, 4096, 8192};
  bool scan = true, ssd = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cuda_ssm: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json") {
      o.json = true;
    } else if (a == "--iters") {
      o.iters = std::atoi(next());
    } else if (a == "--T") {
      o.Ts = parse_list(next());
    } else if (a == "--ops") {
      const std::string ops = next();
      o.scan = ops.find("scan") != std::string::npos;
      o.ssd = ops.find("ssd") != std::string::npos;
    } else {
      std::fprintf(stderr, "usage: cuda_ssm [--json] [--iters N] [--T 1024,4096] [--ops scan,ssd]\n");
      std::exit(2);
    }
  }
  return o;
}

#ifdef STRATA_WITH_CUDA
using namespace strata;

// Device buffer of n floats, N(mean, scale) or uniform in [lo, hi) when lo < hi.
struct Dev {
  float* p;
  Dev(size_t n, uint64_t seed, float scale = 1.0f, float mean = 0.0f, float lo = 0.0f, float hi = 0.0f)
      : p(static_cast<float*>(cuda::alloc(n * sizeof(float)))) {
    std::vector<float> h(n);
    Rng r(seed);
    for (auto& x : h) x = lo < hi ? lo + (hi - lo) * r.uniform() : mean + scale * r.normal();
    cuda::copy_to_device(p, h.data(), n * sizeof(float));
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cuda::free(p); }
};

// One warm-up call, then the mean over iters (synchronised around the loop, not per call).
template <class F>
double time_ms(int iters, F&& f) {
  f();
  cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
}

// shape: the JSON fields after "op" (e.g. "\"B\":4,\"T\":4096,...").
void report(const Options& o, const char* op, const std::string& shape, double ms, double bytes) {
  if (o.json) {
    std::printf("{\"impl\":\"strata\",\"op\":\"%s\",%s,\"ms\":%.4f,\"gbs\":%.1f}\n", op, shape.c_str(), ms,
                bytes / ms / 1e6);
  } else {
    std::string s = shape;
    std::replace(s.begin(), s.end(), ',', ' ');
    s.erase(std::remove(s.begin(), s.end(), '"'), s.end());
    std::printf("%-22s %-44s %9.3f ms %8.1f GB/s\n", op, s.c_str(), ms, bytes / ms / 1e6);
  }
  std::fflush(stdout);
}

std::string fields(std::initializer_list<std::pair<const char*, long>> kv) {
  std::string s;
  for (const auto& [k, v] : kv) {
    if (!s.empty()) s += ',';
    s += fmt::format("\"{}\":{}", k, v);
  }
  return s;
}

void run_scan(const Options& o) {
  const long D = 2048, N = 16;
  for (long T : o.Ts) {
    const long B = std::max(1L, 16384 / T);
    const size_t btd = size_t(B) * T * D, btn = size_t(B) * T * N;
    Dev u(btd, 1), delta(btd, 2, 0.5f), z(btd, 3), bias(D, 4, 0, 0, -3.0f, 0.0f), A(size_t(D) * N, 5, 0, 0, -2.0f, -0.2f),
        Bm(btn, 6), Cm(btn, 7), Ds(D, 8), y(btd, 9), dy(btd, 10), du(btd, 11), dd(btd, 12), dz(btd, 13),
        dA(size_t(D) * N, 14), dB(btn, 15), dC(btn, 16), dD(D, 17), dbias(D, 18);
    const std::string shape = fields({{"B", B}, {"T", T}, {"D", D}, {"N", N}});
    const double io = 4.0 * (4.0 * btd + 2.0 * btn);  // u, delta, z in + y out; B, C in
    const double fwd = time_ms(o.iters, [&] {
      cuda::selective_scan_forward(y.p, nullptr, u.p, delta.p, bias.p, A.p, Bm.p, Cm.p, Ds.p, z.p, nullptr, B, T, D, N);
    });
    report(o, "selective_scan_fwd", shape, fwd, io);
    const double bwd = time_ms(o.iters, [&] {
      cuda::selective_scan_backward(du.p, dd.p, dA.p, dB.p, dC.p, dD.p, dbias.p, dz.p, dy.p, u.p, delta.p, bias.p, A.p,
                                    Bm.p, Cm.p, Ds.p, z.p, B, T, D, N);
    });
    report(o, "selective_scan_bwd", shape, bwd, 4.0 * (7.0 * btd + 4.0 * btn));
  }
  // Decode: one token for 8 sequences.
  const long Bd = 8;
  Dev h(size_t(Bd) * D * N, 20), u(size_t(Bd) * D, 21), delta(size_t(Bd) * D, 22, 0.5f), z(size_t(Bd) * D, 23),
      bias(D, 24, 0, 0, -3.0f, 0.0f), A(size_t(D) * N, 25, 0, 0, -2.0f, -0.2f), Bm(size_t(Bd) * N, 26),
      Cm(size_t(Bd) * N, 27), Ds(D, 28), y(size_t(Bd) * D, 29);
  const double step = time_ms(o.iters * 10, [&] {
    cuda::selective_scan_step(y.p, h.p, u.p, delta.p, bias.p, A.p, Bm.p, Cm.p, Ds.p, z.p, Bd, D, N);
  });
  report(o, "selective_scan_step", fields({{"B", Bd}, {"T", 1}, {"D", D}, {"N", N}}), step,
         4.0 * (2.0 * Bd * D * N + 4.0 * Bd * D));
}

void run_ssd(const Options& o) {
  const long H = 32, P = 64, G = 1, N = 128, chunk = 256;
  for (long T : o.Ts) {
    const long B = std::max(1L, 16384 / T);
    const size_t bthp = size_t(B) * T * H * P, bth = size_t(B) * T * H, btgn = size_t(B) * T * G * N;
    Dev x(bthp, 1), dt(bth, 2, 0.5f), bias(H, 3, 0, 0, -3.0f, -1.0f), A(H, 4, 0, 0, -2.0f, -0.3f), Bm(btgn, 5),
        Cm(btgn, 6), Ds(H, 7), y(bthp, 8), dy(bthp, 9), dx(bthp, 10), ddt(bth, 11), dB(btgn, 12), dC(btgn, 13),
        dA(H, 14), dD(H, 15), dbias(H, 16);
    const std::string shape = fields({{"B", B}, {"T", T}, {"H", H}, {"P", P}, {"G", G}, {"N", N}, {"chunk", chunk}});
    const double io = 4.0 * (2.0 * bthp + bth + 2.0 * btgn);
    const double fwd = time_ms(o.iters, [&] {
      cuda::ssd_forward(y.p, nullptr, x.p, dt.p, bias.p, A.p, Bm.p, Cm.p, Ds.p, nullptr, B, T, H, P, G, N, chunk);
    });
    report(o, "ssd_fwd", shape, fwd, io);
    const double bwd = time_ms(o.iters, [&] {
      cuda::ssd_backward(dx.p, ddt.p, dA.p, dB.p, dC.p, dD.p, dbias.p, dy.p, x.p, dt.p, bias.p, A.p, Bm.p, Cm.p, Ds.p, B,
                         T, H, P, G, N, chunk);
    });
    report(o, "ssd_bwd", shape, bwd, 2.0 * io);
  }
  const long Bd = 8;
  Dev s(size_t(Bd) * H * P * N, 20), x(size_t(Bd) * H * P, 21), dt(size_t(Bd) * H, 22, 0.5f),
      bias(H, 23, 0, 0, -3.0f, -1.0f), A(H, 24, 0, 0, -2.0f, -0.3f), Bm(size_t(Bd) * G * N, 25),
      Cm(size_t(Bd) * G * N, 26), Ds(H, 27), y(size_t(Bd) * H * P, 28);
  const double step = time_ms(o.iters * 10, [&] {
    cuda::ssd_step(y.p, s.p, x.p, dt.p, bias.p, A.p, Bm.p, Cm.p, Ds.p, Bd, H, P, G, N);
  });
  report(o, "ssd_step", fields({{"B", Bd}, {"T", 1}, {"H", H}, {"P", P}, {"G", G}, {"N", N}, {"chunk", chunk}}), step,
         4.0 * 2.0 * Bd * H * P * N);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
#ifdef STRATA_WITH_CUDA
  if (!strata::cuda::device_available()) {
    std::printf("cuda_ssm: %s\n", strata::cuda::unavailable_reason().c_str());
    return 0;
  }
  if (o.scan) run_scan(o);
  if (o.ssd) run_ssd(o);
#else
  (void)o;
  std::printf("cuda_ssm: this binary was built without CUDA (configure with -DSTRATA_CUDA=ON)\n");
#endif
  return 0;
}
