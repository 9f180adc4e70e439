// The GEMM shapes of bench_gemm across libraries: oneDNN, OpenBLAS, BLIS, Eigen (f32; bf16 where
// the library has a bf16 GEMM), 1 and 2 threads. It decides which library aigc uses for GEMM
// (docs/dependencies.md).
//
// OpenBLAS and BLIS both export the CBLAS/BLAS symbols, so they are not linked: each is dlopen'ed
// (RTLD_LOCAL) from the path CMake found, and called through its own entry points (cblas_sgemm,
// bli_sgemm). OpenBLAS reads OPENBLAS_CORETYPE when it loads, so
//   --openblas_coretype=inherit   (default) the environment as it is
//   --openblas_coretype=unset     removed before loading: OpenBLAS detects the CPU itself
//   --openblas_coretype=NAME      forced (e.g. Haswell, SkylakeX, Cooperlake)
// and the benchmark name records both the setting and the core OpenBLAS chose. One process can
// load OpenBLAS once, so bench/run_all.sh runs this binary once per setting.
//
//   build/gemm_libs [--threads=1,2] [--openblas_coretype=unset] [--benchmark_filter=openblas]
#include <dlfcn.h>
#include <omp.h>

#include <Eigen/Core>
#include <cstdlib>
#include <cstring>

#ifdef AIGC_BLIS_HEADER
#include AIGC_BLIS_HEADER
#endif

#include "../gemm_onednn.h"
#include "../harness.h"

namespace aigc::bench {
namespace {

void* library_open(const char* path, const char* what) {
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) std::fprintf(stderr, "gemm_libs: %s not loaded (%s): %s\n", what, path, dlerror());
  return h;
}

template <typename Fn>
Fn symbol(void* h, const char* name) {
  return reinterpret_cast<Fn>(dlsym(h, name));
}

// ---- OpenBLAS --------------------------------------------------------------------------------
// CBLAS constants (cblas.h): CblasRowMajor 101, CblasNoTrans 111, CblasTrans 112.
using cblas_sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                                float, float*, int);
using openblas_threads_fn = void (*)(int);
using openblas_corename_fn = char* (*)();

std::vector<GemmImpl> openblas_impls(const std::string& coretype) {
#ifndef AIGC_OPENBLAS_PATH
  (void)coretype;
  return {};
#else
  std::string env_label = "inherit";
  if (coretype == "unset") {
    unsetenv("OPENBLAS_CORETYPE");
    env_label = "unset";
  } else if (coretype != "inherit") {
    setenv("OPENBLAS_CORETYPE", coretype.c_str(), 1);
    env_label = coretype;
  } else if (const char* e = std::getenv("OPENBLAS_CORETYPE")) {
    env_label = std::string("inherit:") + e;
  } else {
    env_label = "inherit:unset";
  }
  void* h = library_open(AIGC_OPENBLAS_PATH, "OpenBLAS");
  if (!h) return {};
  auto sgemm = symbol<cblas_sgemm_fn>(h, "cblas_sgemm");
  auto threads_set = symbol<openblas_threads_fn>(h, "openblas_set_num_threads");
  auto corename = symbol<openblas_corename_fn>(h, "openblas_get_corename");
  if (!sgemm || !threads_set) return {};
  const std::string core = corename ? corename() : "?";
  benchmark::AddCustomContext("openblas_coretype_env", env_label);
  benchmark::AddCustomContext("openblas_core", core);
  std::fprintf(stderr, "gemm_libs: OpenBLAS core %s (OPENBLAS_CORETYPE %s)\n", core.c_str(), env_label.c_str());
  // No cblas_sbgemm here: Debian's OpenBLAS 0.3.21 is built without BUILD_BFLOAT16.
  if (dlsym(h, "cblas_sbgemm")) std::fprintf(stderr, "gemm_libs: note: this OpenBLAS has cblas_sbgemm (not benchmarked)\n");

  GemmImpl impl;
  impl.name = "openblas_f32[env=" + env_label + ",core=" + core + "]";
  impl.precision = Precision::f32;
  impl.threads_set = [threads_set](int t) { threads_set(t); };
  impl.prepare = [sgemm](const GemmInput& in) {
    const GemmShape s = in.shape;
    auto c = std::make_shared<std::vector<float>>(s.m * s.n);
    const float *a = in.a.data(), *b = in.b.data();  // GemmInput outlives the prepared case
    GemmPrepared p;
    p.run = [sgemm, s, a, b, c] {
      sgemm(101, 111, 112, int(s.m), int(s.n), int(s.k), 1.0f, a, int(s.k), b, int(s.k), 0.0f, c->data(), int(s.n));
    };
    p.c = [c] { return c->data(); };
    p.keep = c;
    return p;
  };
  return {impl};
#endif
}

// ---- BLIS ------------------------------------------------------------------------------------
// bli_sgemm takes any row/column strides: B [N, K] row-major is B^T [K, N] with strides (1, K).
std::vector<GemmImpl> blis_impls() {
#if !defined(AIGC_BLIS_PATH) || !defined(AIGC_BLIS_HEADER)
  return {};
#else
  void* h = library_open(AIGC_BLIS_PATH, "BLIS");
  if (!h) return {};
  auto sgemm = symbol<decltype(&bli_sgemm)>(h, "bli_sgemm");
  auto threads_set = symbol<decltype(&bli_thread_set_num_threads)>(h, "bli_thread_set_num_threads");
  auto arch_id = symbol<decltype(&bli_arch_query_id)>(h, "bli_arch_query_id");
  auto arch_name = symbol<decltype(&bli_arch_string)>(h, "bli_arch_string");
  if (!sgemm || !threads_set) return {};
  const std::string arch = arch_id && arch_name ? arch_name(arch_id()) : "?";
  benchmark::AddCustomContext("blis_arch", arch);
  std::fprintf(stderr, "gemm_libs: BLIS kernels for %s\n", arch.c_str());

  GemmImpl impl;
  impl.name = "blis_f32[arch=" + arch + "]";
  impl.precision = Precision::f32;
  impl.threads_set = [threads_set](int t) { threads_set(t); };
  impl.prepare = [sgemm](const GemmInput& in) {
    const GemmShape s = in.shape;
    auto c = std::make_shared<std::vector<float>>(s.m * s.n);
    float* a = const_cast<float*>(in.a.data());
    float* b = const_cast<float*>(in.b.data());
    GemmPrepared p;
    p.run = [sgemm, s, a, b, c] {
      float one = 1.0f, zero = 0.0f;
      sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, s.m, s.n, s.k, &one, a, s.k, 1, b, 1, s.k, &zero, c->data(),
            s.n, 1);
    };
    p.c = [c] { return c->data(); };
    p.keep = c;
    return p;
  };
  return {impl};
#endif
}

// ---- Eigen 3.4 -------------------------------------------------------------------------------
// Threads: Eigen's GEMM parallelises with OpenMP (this file is built with -fopenmp), count set by
// Eigen::setNbThreads. M = 1 takes Eigen's matrix-vector path, which is single-threaded.
// No bf16: Eigen::bfloat16 products run through scalar code, not a bf16 GEMM kernel.
GemmImpl eigen_impl() {
  GemmImpl impl;
  impl.name = "eigen_f32";
  impl.precision = Precision::f32;
  impl.threads_set = [](int t) { Eigen::setNbThreads(t); };
  impl.prepare = [](const GemmInput& in) {
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const GemmShape s = in.shape;
    auto c = std::make_shared<RowMat>(s.m, s.n);
    const float *a = in.a.data(), *b = in.b.data();
    GemmPrepared p;
    p.run = [s, a, b, c] {
      Eigen::Map<const RowMat> A(a, s.m, s.k), B(b, s.n, s.k);
      c->noalias() = A * B.transpose();
    };
    p.c = [c] { return c->data(); };
    p.keep = c;
    return p;
  };
  return impl;
}

}  // namespace
}  // namespace aigc::bench

int main(int argc, char** argv) {
  using namespace aigc::bench;
  // Our own flag first (it must act before OpenBLAS loads); the rest goes to the harness.
  std::string coretype = "inherit";
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--openblas_coretype=", 20) == 0) {
      coretype = argv[i] + 20;
    } else {
      rest.push_back(argv[i]);
    }
  }
  rest.push_back(nullptr);
  const std::vector<int> threads = harness_init(static_cast<int>(rest.size()) - 1, rest.data());
  benchmark::AddCustomContext("eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                                   std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                                   std::to_string(EIGEN_MINOR_VERSION));
  benchmark::AddCustomContext("onednn_version", std::to_string(dnnl_version()->major) + "." +
                                                    std::to_string(dnnl_version()->minor) + "." +
                                                    std::to_string(dnnl_version()->patch));

  std::vector<GemmImpl> impls = {
      gemm_impl_onednn(Precision::f32, /*packed=*/true),
      gemm_impl_onednn(Precision::bf16, /*packed=*/true),
  };
  for (GemmImpl& i : openblas_impls(coretype)) impls.push_back(i);
  for (GemmImpl& i : blis_impls()) impls.push_back(i);
  impls.push_back(eigen_impl());
  gemm_benchmarks_register(impls, threads);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
