// The portable build (CMake -DSTRATA_NATIVE=OFF, scripts/build.sh portable) must run on every node
// with its baseline ISA (x86-64-v3: AVX2 + FMA). This disassembles the strata binary and fails on
// any instruction beyond the baseline outside the AVX-512 copies of the dispatched kernels
// (src/kernels/cpu/isa.h: GCC names them fn.avx512f, and their OpenMP regions fn._omp_fn.N.avx512f).
// It also checks that those copies exist, so that the run-time dispatch cannot vanish silently.
// The shared libraries (oneDNN, libc, libgomp) are not scanned: they choose their code paths at run
// time themselves.
//
// tests/emulated_cpu.sh runs the kernel tests of this build on an emulated Haswell (qemu-user),
// which catches what a static scan cannot (a wrong resolver choice, a library that assumes more).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "kernels/cpu/isa.h"

namespace {

// Suffix of the AVX-512 copies made by STRATA_CPU_CLONES.
constexpr const char* kCloneSuffix = "." STRATA_CPU_CLONE_ISA;

[[maybe_unused]] bool have_objdump() { return std::system("command -v objdump >/dev/null 2>&1") == 0; }

// Mnemonics of instruction sets beyond x86-64-v3 that are VEX-encoded or legacy (the EVEX test
// below catches all of AVX-512): AMX, AVX-VNNI / AVX-IFMA / AVX-NE-CONVERT, GFNI, AES, PCLMUL, SHA, ADX.
bool beyond_v3_mnemonic(const std::string& m) {
  static const std::regex re(
      R"(^(ldtilecfg|sttilecfg|tile\w+|tdp\w+|vpdpb\w+|vpdpw\w+|vpmadd52\w+|vcvtne\w+|vbcstne\w+)$)"
      R"(|^(v?gf2p8\w+|v?aes\w+|v?pclmul\w+|sha\w+|adcx|adox)$)");
  return std::regex_match(m, re);
}

// The opcode bytes of one instruction, after legacy prefixes: 0x62 starts an EVEX instruction
// (AVX-512) in 64-bit mode, 0xC4 / 0xC5 a VEX one (AVX, AVX2, FMA).
enum class Encoding { legacy, vex, evex };
Encoding encoding_of(const std::string& hex_bytes) {
  std::istringstream in(hex_bytes);
  std::string b;
  while (in >> b) {
    const unsigned v = std::stoul(b, nullptr, 16);
    const bool prefix = v == 0xf0 || v == 0xf2 || v == 0xf3 || v == 0x2e || v == 0x36 || v == 0x3e || v == 0x26 ||
                        v == 0x64 || v == 0x65 || v == 0x66 || v == 0x67;
    if (prefix) continue;
    if (v == 0x62) return Encoding::evex;
    if (v == 0xc4 || v == 0xc5) return Encoding::vex;
    return Encoding::legacy;
  }
  return Encoding::legacy;
}

struct Scan {
  std::map<std::string, std::vector<std::string>> offending;  // function -> its first offending lines
  std::map<std::string, int> clone_evex;                      // AVX-512 copy -> its EVEX instructions
  int functions = 0, instructions = 0;
};

// objdump -d of `path`: every instruction outside the AVX-512 copies that the baseline lacks.
[[maybe_unused]] Scan scan_binary(const std::string& path, bool baseline_has_avx2) {
  Scan s;
  const std::string cmd = "objdump -d -w --insn-width=16 '" + path + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return s;
  static const std::regex header(R"(^[0-9a-f]+ <(.+)>:$)");
  static const std::regex insn(R"(^\s*[0-9a-f]+:\t([0-9a-f ]+)\t(\S+).*$)");
  std::string fn;
  std::array<char, 8192> buf;
  std::smatch m;
  while (fgets(buf.data(), int(buf.size()), p)) {
    std::string line(buf.data());
    if (!line.empty() && line.back() == '\n') line.pop_back();
    if (std::regex_match(line, m, header)) {
      fn = m[1];
      ++s.functions;
      continue;
    }
    if (!std::regex_match(line, m, insn)) continue;
    ++s.instructions;
    const Encoding e = encoding_of(m[1]);
    // Also the kernels that dispatch by hand on CPUID (kernels/cpu/quant_gemm.cpp: namespace isa_avx512).
    const bool is_clone = fn.find(kCloneSuffix) != std::string::npos || fn.find("isa_avx512") != std::string::npos;
    if (is_clone) {
      if (e == Encoding::evex) ++s.clone_evex[fn];
      continue;
    }
    const bool bad = e == Encoding::evex || (e == Encoding::vex && !baseline_has_avx2) || beyond_v3_mnemonic(m[2]);
    if (bad) {
      auto& v = s.offending[fn];
      if (v.size() < 3) v.push_back(line);
    }
  }
  pclose(p);
  return s;
}

TEST(PortableIsa, StrataBinaryHasNoInstructionBeyondItsBaseline) {
#ifndef STRATA_PORTABLE_ARCH
  GTEST_SKIP() << "native build (-march=native): it may use every instruction of the build machine; "
                  "configure with -DSTRATA_NATIVE=OFF (scripts/build.sh portable) to check the portable one";
#else
  const std::string baseline = STRATA_PORTABLE_ARCH;
  if (baseline == "x86-64-v4") GTEST_SKIP() << "baseline x86-64-v4: AVX-512 is part of it, nothing to check";
  if (!have_objdump()) GTEST_SKIP() << "objdump not found (Debian: binutils)";
  const std::string bin = strata::testing::strata_bin();
  if (!std::filesystem::exists(bin)) GTEST_SKIP() << "strata binary not found at " << bin << " (set STRATA_BIN)";
  // x86-64-v3 has AVX2 (VEX); v2 and the original x86-64 have no VEX instruction at all.
  const Scan s = scan_binary(bin, baseline == "x86-64-v3");
  ASSERT_GT(s.instructions, 10000) << "objdump -d " << bin << " gave almost nothing: is it an x86-64 ELF?";
  std::ostringstream msg;
  for (const auto& [fn, lines] : s.offending) {
    msg << "  " << fn << ":\n";
    for (const auto& l : lines) msg << "      " << l << "\n";
  }
  EXPECT_TRUE(s.offending.empty()) << s.offending.size() << " function(s) of " << bin
                                   << " use instructions beyond " << baseline
                                   << " outside the dispatched AVX-512 copies (SIGILL on an older node):\n"
                                   << msg.str();
  std::printf("scanned %d functions, %d instructions; %zu AVX-512 copies\n", s.functions, s.instructions,
              s.clone_evex.size());
#endif
}

TEST(PortableIsa, HotKernelsHaveAvx512Copies) {
#if !defined(STRATA_PORTABLE_ARCH) || !defined(STRATA_CPU_DISPATCH)
  GTEST_SKIP() << "not a portable build with run-time dispatch (-DSTRATA_NATIVE=OFF -DSTRATA_CPU_DISPATCH=ON)";
#else
  if (!have_objdump()) GTEST_SKIP() << "objdump not found (Debian: binutils)";
  const std::string bin = strata::testing::strata_bin();
  if (!std::filesystem::exists(bin)) GTEST_SKIP() << "strata binary not found at " << bin << " (set STRATA_BIN)";
  const Scan s = scan_binary(bin, true);
  // A few kernels that dominate a training step (mangled names: namespace strata::cpu).
  for (const char* kernel :
       {"_ZN6strata3cpu15rmsnorm_forwardE", "_ZN6strata3cpu12ssd_backwardE", "_ZN6strata3cpu14swiglu_forwardE"}) {
    int evex = 0;
    for (const auto& [fn, n] : s.clone_evex)
      if (fn.rfind(kernel, 0) == 0) evex += n;
    EXPECT_GT(evex, 0) << "no AVX-512 copy (" << kernel << "..." << kCloneSuffix << ") with AVX-512 code in " << bin;
  }
  EXPECT_GE(s.clone_evex.size(), 20u) << "fewer AVX-512 kernel copies than expected in " << bin;
#endif
}

TEST(PortableIsa, KernelIsaNamesTheChoice) {
  const std::string isa = strata::cpu::kernel_isa();
#if !defined(STRATA_PORTABLE_ARCH)
  EXPECT_EQ(isa, "native");
#elif defined(STRATA_CPU_DISPATCH) && defined(__x86_64__)
  const bool has_copy_isa = __builtin_cpu_supports(STRATA_CPU_CLONE_ISA);
  EXPECT_EQ(isa, has_copy_isa ? STRATA_PORTABLE_ARCH "+" STRATA_CPU_CLONE_ISA : STRATA_PORTABLE_ARCH);
#else
  EXPECT_EQ(isa, STRATA_PORTABLE_ARCH);
#endif
}

}  // namespace
