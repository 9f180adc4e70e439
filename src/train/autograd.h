// Autograd: a tape of ops over f32 tensors, planned once per shape and then run many times.
//
// Planning records ops and shapes only; allocate() then carves every value, gradient and saved
// activation out of three buffers (parameters, parameter gradients, activations), so forward()
// and backward() allocate nothing. Parameters and their gradients are each one flat array, which
// is what the optimiser walks (train/adamw.h).
//
//   Graph g;
//   Var w = g.param("w", {4, 8});
//   Ids x = g.ids(16), y = g.ids(16);
//   Var e = g.param("emb", {100, 8});
//   Var loss = g.cross_entropy(g.linear(g.embedding(e, x), w), y);   // [16, 4] logits
//   g.allocate();
//   // fill g.value(w), g.ids_data(x) ...
//   float l = g.forward(loss);
//   g.backward(loss);                                                 // g.grad(w) now holds dL/dw
//
// Reverse mode: backward() zeroes every gradient, seeds d(loss) = 1 and walks the tape backwards;
// each op's backward ACCUMULATES into its inputs' gradients (train/backward.h), so a value used
// several times (the residual stream) sums its contributions.
// Kernels: the fast ones by default (ops:: forwards, grad:: backwards); kernels_reference_set(true)
// switches both passes to the plain reference kernels (tests compare the two).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/tensor.h"
#include "train/backward.h"
#include "train/backward_image.h"

namespace aigc::train {

struct Var {
  int32_t id = -1;
  bool valid() const { return id >= 0; }
};
struct Ids {  // an int32 input (token ids, targets) filled by the caller before forward()
  int32_t id = -1;
};

enum class OpKind : uint8_t {
  Embedding, RmsNorm, Linear, Rope, Attention, Silu, Mul, Add, CrossEntropy,
  // image ops (train/backward_image.h)
  Conv2d, GroupNorm, LayerNorm, Upsample2, ConcatChannels, AddChannel, Transpose12, Mha, Mse
};

class Graph {
 public:
  Graph() = default;
  // Values are views into the graph's buffers: a copy would alias them, so graphs only move.
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  // ---- planning (before allocate) ----
  Var param(std::string name, std::initializer_list<int64_t> shape);
  Ids ids(int64_t n);
  Var embedding(Var table, Ids ids);                  // table [V, C] -> [n, C]
  Var rms_norm(Var x, Var g, float eps);              // x [N, C], g [C]
  Var linear(Var x, Var w);                           // x [N, K], w [O, K] -> [N, O]
  // x [B*T, H*D] (token-major) rotated per head at positions 0..T-1 of each sequence.
  Var rope(Var x, int64_t B, int64_t T, int64_t H, const ops::RopeParams& p);
  // causal self-attention; q [B*T, H*D], k, v [B*T, G*D] -> [B*T, H*D]
  Var attention(Var q, Var k, Var v, const grad::AttentionShape& s);
  Var silu(Var x);
  Var mul(Var a, Var b);
  Var add(Var a, Var b);
  Var cross_entropy(Var logits, Ids targets);         // logits [N, V] -> [1] (mean)

  // ---- image ops (a small text-conditioned UNet) ----
  // A float input the caller fills before forward() (images, noise targets, text states); it gets
  // a gradient like any value (ignored unless wanted).
  Var input(std::initializer_list<int64_t> shape);
  // The same storage (value and gradient) under another shape of equal numel: no copy, no node.
  Var view(Var x, std::initializer_list<int64_t> shape);
  Var linear(Var x, Var w, Var b);                    // x [N, K], w [O, K], b [O] -> [N, O]
  // x [N, C, H, W], w [O, C, kh, kw], b [O] or an invalid Var (no bias) -> [N, O, Ho, Wo]
  Var conv2d(Var x, Var w, Var b, int stride, int pad);
  Var group_norm(Var x, Var gamma, Var beta, int groups, float eps);  // x [N, C, ...]
  Var layer_norm(Var x, Var gamma, Var beta, float eps);              // over the last dim
  Var upsample2(Var x);                               // nearest x2: [N, C, H, W] -> [N, C, 2H, 2W]
  Var concat_channels(Var a, Var b);                  // [N, Ca, ...], [N, Cb, ...] -> [N, Ca+Cb, ...]
  Var add_channel(Var x, Var e);                      // x [N, C, ...] + e [N, C] per (sample, channel)
  Var transpose12(Var x);                             // [N, A, B] -> [N, B, A] (NCHW <-> tokens)
  // non-causal attention: q [B, Tq, H*D], k, v [B, Tk, H*D] -> [B, Tq, H*D]
  Var mha(Var q, Var k, Var v, const grad::MhaShape& s);
  Var mse(Var pred, Var target);                      // mean squared error -> [1]

  // Carves all storage; after this, no more planning. Parameter values are left uninitialised.
  void allocate();
  bool allocated() const { return allocated_; }

  // ---- running ----
  float forward(Var loss);   // runs every op in order; returns value(loss)[0]
  void backward(Var loss);   // d loss / d everything
  // Backward from any value with a given upstream gradient dy (same numel as y): d(sum(y * dy)).
  void backward(Var y, std::span<const float> dy);
  void kernels_reference_set(bool on) { reference_ = on; }

  Tensor& value(Var v) { return vars_.at(static_cast<size_t>(v.id)).value; }
  Tensor& grad(Var v) { return vars_.at(static_cast<size_t>(v.id)).grad; }
  std::span<int32_t> ids_data(Ids i) { return ids_.at(static_cast<size_t>(i.id)); }

  // Parameters in creation order; their values and gradients are consecutive in the flat arrays.
  struct ParamInfo {
    std::string name;
    Var var;
    int64_t offset = 0;  // in floats, into params_flat()/grads_flat()
    int64_t numel = 0;
  };
  const std::vector<ParamInfo>& params() const { return params_; }
  std::span<float> params_flat() { return {static_cast<float*>(param_buf_.get()), static_cast<size_t>(n_param_)}; }
  std::span<float> grads_flat() { return {static_cast<float*>(grad_buf_.get()), static_cast<size_t>(n_param_)}; }
  int64_t activation_bytes() const { return n_act_ * 4; }

 private:
  struct VarInfo {
    std::vector<int64_t> shape;
    bool is_param = false;
    int32_t alias = -1;  // view(): shares the storage of this var
    Tensor value, grad;
  };
  struct Node {
    explicit Node(OpKind k) : kind(k) {}
    OpKind kind;
    Var out;
    Var in[3];
    Ids ids;
    float eps = 0.0f;
    int64_t B = 0, T = 0, H = 0;
    ops::RopeParams rope;
    grad::AttentionShape attn;
    grad::MhaShape mha;
    int stride = 1, pad = 0, groups = 1;
    Tensor aux;  // attention probs [H, B, T, T] / cross-entropy softmax [N, V]
    std::vector<int64_t> aux_shape;
    std::vector<int32_t> positions;  // rope: 0..T-1
    Tensor x4, y4, dx4, dy4;         // rope: [B, T, H, D] views, made once (reshape allocates)
  };

  Var var_new(std::vector<int64_t> shape, bool is_param);
  Var node_push(Node n, std::vector<int64_t> out_shape);
  const std::vector<int64_t>& shape(Var v) const { return vars_.at(static_cast<size_t>(v.id)).shape; }
  void check_planning(const char* op) const;
  void node_forward(Node& n);
  void node_backward(Node& n);

  std::vector<VarInfo> vars_;
  std::vector<Node> nodes_;
  std::vector<std::vector<int32_t>> ids_;
  std::vector<ParamInfo> params_;
  std::shared_ptr<void> param_buf_, grad_buf_, act_buf_;
  int64_t n_param_ = 0, n_act_ = 0, n_scratch_ = 0;
  Tensor scratch_;
  bool allocated_ = false;
  bool reference_ = false;
};

}  // namespace aigc::train
