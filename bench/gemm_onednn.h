// oneDNN matmul as a GemmImpl (bench/harness.h): C[M, N] = A[M, K] · B[N, K]^T.
//   packed: weights in format_tag::any, i.e. the layout oneDNN's kernel wants, made once by a
//           reorder outside the timed loop (what an engine does at model load);
//   plain:  weights used as stored ([N, K] row-major = "ba" of the [K, N] operand).
// bf16: A and B are converted to bf16 outside the timed loop (in a model the activations'
// conversion is part of the layer; it is not timed here), C is f32.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <unordered_map>

#include "harness.h"

namespace aigc::bench {

inline GemmImpl gemm_impl_onednn(Precision precision, bool packed) {
  GemmImpl impl;
  impl.name = std::string("onednn_") + precision_name(precision) + (packed ? "_packed" : "_plain");
  impl.precision = precision;
  impl.prepare = [precision, packed](const GemmInput& in) {
    using dnnl::memory;
    using tag = memory::format_tag;
    static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    const GemmShape& s = in.shape;
    const memory::data_type dt = precision == Precision::bf16 ? memory::data_type::bf16 : memory::data_type::f32;
    const memory::desc a_md({s.m, s.k}, dt, tag::ab);
    const memory::desc b_md({s.k, s.n}, dt, packed ? tag::any : tag::ba);
    const memory::desc c_md({s.m, s.n}, memory::data_type::f32, tag::ab);
    // Created after the thread count is set: oneDNN picks its blocking for that many threads.
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), eng);

    dnnl::stream strm(eng);
    memory a_user({{s.m, s.k}, memory::data_type::f32, tag::ab}, eng, const_cast<float*>(in.a.data()));
    memory b_user({{s.k, s.n}, memory::data_type::f32, tag::ba}, eng, const_cast<float*>(in.b.data()));
    memory a_mem(pd.src_desc(), eng), b_mem(pd.weights_desc(), eng), c_mem(pd.dst_desc(), eng);
    dnnl::reorder(a_user, a_mem).execute(strm, a_user, a_mem);
    dnnl::reorder(b_user, b_mem).execute(strm, b_user, b_mem);  // the one-time packing
    strm.wait();

    dnnl::matmul prim(pd);
    GemmPrepared p;
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
    p.run = [prim, strm, args]() mutable {
      prim.execute(strm, args);
      strm.wait();
    };
    p.c = [c_mem] { return static_cast<const float*>(c_mem.get_data_handle()); };
    return p;
  };
  return impl;
}

}  // namespace aigc::bench
