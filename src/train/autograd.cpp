// Graph: planning, one-shot allocation, and the forward/backward walk over the tape.
#include "train/autograd.h"

#include <algorithm>
#include <cstring>

namespace aigc::train {

namespace {

int64_t numel_of(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

int64_t round_up16(int64_t n) { return (n + 15) / 16 * 16; }  // keep every tensor 64-byte aligned

}  // namespace

void Graph::check_planning(const char* op) const {
  AIGC_ASSERT(!allocated_, "Graph::{} after allocate()", op);
}

Var Graph::var_new(std::vector<int64_t> shape, bool is_param) {
  VarInfo v;
  v.shape = std::move(shape);
  v.is_param = is_param;
  vars_.push_back(std::move(v));
  return Var{static_cast<int32_t>(vars_.size() - 1)};
}

Var Graph::node_push(Node n, std::vector<int64_t> out_shape) {
  n.out = var_new(std::move(out_shape), false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::param(std::string name, std::initializer_list<int64_t> shape) {
  check_planning("param");
  Var v = var_new(std::vector<int64_t>(shape), true);
  params_.push_back(ParamInfo{std::move(name), v, 0, numel_of(vars_.back().shape)});
  return v;
}

Ids Graph::ids(int64_t n) {
  check_planning("ids");
  AIGC_CHECK(n > 0, "Graph::ids: count {} must be positive", n);
  ids_.emplace_back(static_cast<size_t>(n), 0);
  return Ids{static_cast<int32_t>(ids_.size() - 1)};
}

Var Graph::embedding(Var table, Ids ids) {
  check_planning("embedding");
  const auto& ts = shape(table);
  AIGC_CHECK(ts.size() == 2, "embedding: table must be 2-d");
  Node n(OpKind::Embedding);
  n.in[0] = table;
  n.ids = ids;
  n.out = var_new({static_cast<int64_t>(ids_.at(static_cast<size_t>(ids.id)).size()), ts[1]}, false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::rms_norm(Var x, Var g, float eps) {
  check_planning("rms_norm");
  AIGC_CHECK(shape(g).size() == 1 && shape(g)[0] == shape(x).back(), "rms_norm: gamma does not match x");
  Node n(OpKind::RmsNorm);
  n.in[0] = x;
  n.in[1] = g;
  n.eps = eps;
  n.out = var_new(shape(x), false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::linear(Var x, Var w) { return linear(x, w, Var{}); }

Var Graph::linear(Var x, Var w, Var b) {
  check_planning("linear");
  const auto &xs = shape(x), &ws = shape(w);
  AIGC_CHECK(xs.size() == 2 && ws.size() == 2 && xs[1] == ws[1], "linear: x [N, K] and w [O, K] do not match");
  AIGC_CHECK(!b.valid() || (shape(b).size() == 1 && shape(b)[0] == ws[0]), "linear: bias must be [O]");
  Node n(OpKind::Linear);
  n.in[0] = x;
  n.in[1] = w;
  n.in[2] = b;
  n_scratch_ = std::max(n_scratch_, std::max(numel_of(xs), numel_of(ws)));
  return node_push(std::move(n), {xs[0], ws[0]});
}

Var Graph::rope(Var x, int64_t B, int64_t T, int64_t H, const ops::RopeParams& p) {
  check_planning("rope");
  const auto& xs = shape(x);
  AIGC_CHECK(xs.size() == 2 && xs[0] == B * T && xs[1] % H == 0, "rope: x must be [B*T, H*D]");
  Node n(OpKind::Rope);
  n.in[0] = x;
  n.B = B;
  n.T = T;
  n.H = H;
  n.rope = p;
  n.positions.resize(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) n.positions[static_cast<size_t>(t)] = static_cast<int32_t>(t);
  n.out = var_new(xs, false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::attention(Var q, Var k, Var v, const grad::AttentionShape& s) {
  check_planning("attention");
  AIGC_CHECK(numel_of(shape(q)) == s.B * s.T * s.H * s.D && numel_of(shape(k)) == s.B * s.T * s.G * s.D &&
                 numel_of(shape(v)) == numel_of(shape(k)) && s.G > 0 && s.H % s.G == 0,
             "attention: q, k, v do not match the shape");
  Node n(OpKind::Attention);
  n.in[0] = q;
  n.in[1] = k;
  n.in[2] = v;
  n.attn = s;
  n.aux_shape = {s.H, s.B, s.T, s.T};
  n_scratch_ = std::max(n_scratch_, grad::attention_scratch_floats(s));
  n.out = var_new(shape(q), false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::silu(Var x) {
  check_planning("silu");
  Node n(OpKind::Silu);
  n.in[0] = x;
  n.out = var_new(shape(x), false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::mul(Var a, Var b) {
  check_planning("mul");
  AIGC_CHECK(shape(a) == shape(b), "mul: shapes differ");
  Node n(OpKind::Mul);
  n.in[0] = a;
  n.in[1] = b;
  n.out = var_new(shape(a), false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::add(Var a, Var b) {
  check_planning("add");
  AIGC_CHECK(shape(a) == shape(b), "add: shapes differ");
  Node n(OpKind::Add);
  n.in[0] = a;
  n.in[1] = b;
  n.out = var_new(shape(a), false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

Var Graph::cross_entropy(Var logits, Ids targets) {
  check_planning("cross_entropy");
  const auto& ls = shape(logits);
  AIGC_CHECK(ls.size() == 2 && static_cast<int64_t>(ids_.at(static_cast<size_t>(targets.id)).size()) == ls[0],
             "cross_entropy: logits [N, V] and N targets expected");
  Node n(OpKind::CrossEntropy);
  n.in[0] = logits;
  n.ids = targets;
  n.aux_shape = {ls[0], ls[1]};  // softmax probabilities, for the backward
  n.out = var_new({1}, false);
  nodes_.push_back(std::move(n));
  return nodes_.back().out;
}

// ---- image ops ----

Var Graph::input(std::initializer_list<int64_t> shape) {
  check_planning("input");
  for (int64_t d : shape) AIGC_CHECK(d > 0, "Graph::input: dimension {} must be positive", d);
  return var_new(std::vector<int64_t>(shape), false);
}

Var Graph::view(Var x, std::initializer_list<int64_t> shape) {
  check_planning("view");
  std::vector<int64_t> s(shape);
  AIGC_CHECK(numel_of(s) == numel_of(this->shape(x)), "view: {} elements cannot be viewed as {}",
             numel_of(this->shape(x)), numel_of(s));
  const int32_t root = vars_.at(static_cast<size_t>(x.id)).alias >= 0 ? vars_[static_cast<size_t>(x.id)].alias : x.id;
  Var v = var_new(std::move(s), false);
  vars_.back().alias = root;
  return v;
}

Var Graph::conv2d(Var x, Var w, Var b, int stride, int pad) {
  check_planning("conv2d");
  const std::vector<int64_t> xs = shape(x), ws = shape(w);
  AIGC_CHECK(xs.size() == 4 && ws.size() == 4 && xs[1] == ws[1] && stride >= 1 && pad >= 0,
             "conv2d: x [N, C, H, W] and w [O, C, kh, kw] do not match");
  AIGC_CHECK(!b.valid() || (shape(b).size() == 1 && shape(b)[0] == ws[0]), "conv2d: bias must be [O]");
  const int64_t Ho = (xs[2] + 2 * pad - ws[2]) / stride + 1, Wo = (xs[3] + 2 * pad - ws[3]) / stride + 1;
  AIGC_CHECK(Ho > 0 && Wo > 0, "conv2d: kernel larger than the padded input");
  Node n(OpKind::Conv2d);
  n.in[0] = x;
  n.in[1] = w;
  n.in[2] = b;
  n.stride = stride;
  n.pad = pad;
  n_scratch_ = std::max<int64_t>(n_scratch_, 1);  // conv2d_scratch_floats
  return node_push(std::move(n), {xs[0], ws[0], Ho, Wo});
}

Var Graph::group_norm(Var x, Var gamma, Var beta, int groups, float eps) {
  check_planning("group_norm");
  const std::vector<int64_t> xs = shape(x);
  AIGC_CHECK(xs.size() >= 2 && groups > 0 && xs[1] % groups == 0 && shape(gamma) == std::vector<int64_t>{xs[1]} &&
                 shape(beta) == shape(gamma),
             "group_norm: x [N, C, ...] with C % groups == 0 and gamma, beta [C] expected");
  Node n(OpKind::GroupNorm);
  n.in[0] = x;
  n.in[1] = gamma;
  n.in[2] = beta;
  n.groups = groups;
  n.eps = eps;
  return node_push(std::move(n), xs);
}

Var Graph::layer_norm(Var x, Var gamma, Var beta, float eps) {
  check_planning("layer_norm");
  const std::vector<int64_t> xs = shape(x);
  AIGC_CHECK(shape(gamma) == std::vector<int64_t>{xs.back()} && shape(beta) == shape(gamma),
             "layer_norm: gamma, beta must be [C] of x [..., C]");
  Node n(OpKind::LayerNorm);
  n.in[0] = x;
  n.in[1] = gamma;
  n.in[2] = beta;
  n.eps = eps;
  return node_push(std::move(n), xs);
}

Var Graph::upsample2(Var x) {
  check_planning("upsample2");
  const std::vector<int64_t> xs = shape(x);
  AIGC_CHECK(xs.size() == 4, "upsample2: x must be [N, C, H, W]");
  Node n(OpKind::Upsample2);
  n.in[0] = x;
  return node_push(std::move(n), {xs[0], xs[1], 2 * xs[2], 2 * xs[3]});
}

Var Graph::concat_channels(Var a, Var b) {
  check_planning("concat_channels");
  std::vector<int64_t> as = shape(a), bs = shape(b);
  AIGC_CHECK(as.size() >= 2 && as.size() == bs.size() && as[0] == bs[0] &&
                 std::equal(as.begin() + 2, as.end(), bs.begin() + 2),
             "concat_channels: a [N, Ca, ...] and b [N, Cb, ...] must agree outside dim 1");
  Node n(OpKind::ConcatChannels);
  n.in[0] = a;
  n.in[1] = b;
  as[1] += bs[1];
  return node_push(std::move(n), as);
}

Var Graph::add_channel(Var x, Var e) {
  check_planning("add_channel");
  const std::vector<int64_t> xs = shape(x);
  AIGC_CHECK(xs.size() >= 2 && shape(e) == (std::vector<int64_t>{xs[0], xs[1]}), "add_channel: e must be [N, C] of x");
  Node n(OpKind::AddChannel);
  n.in[0] = x;
  n.in[1] = e;
  return node_push(std::move(n), xs);
}

Var Graph::transpose12(Var x) {
  check_planning("transpose12");
  const std::vector<int64_t> xs = shape(x);
  AIGC_CHECK(xs.size() == 3, "transpose12: x must be [N, A, B]");
  Node n(OpKind::Transpose12);
  n.in[0] = x;
  return node_push(std::move(n), {xs[0], xs[2], xs[1]});
}

Var Graph::mha(Var q, Var k, Var v, const grad::MhaShape& s) {
  check_planning("mha");
  AIGC_CHECK(numel_of(shape(q)) == s.B * s.Tq * s.H * s.D && numel_of(shape(k)) == s.B * s.Tk * s.H * s.D &&
                 numel_of(shape(v)) == numel_of(shape(k)),
             "mha: q, k, v do not match the shape");
  Node n(OpKind::Mha);
  n.in[0] = q;
  n.in[1] = k;
  n.in[2] = v;
  n.mha = s;
  n.aux_shape = {s.B, s.H, s.Tq, s.Tk};
  return node_push(std::move(n), shape(q));
}

Var Graph::mse(Var pred, Var target) {
  check_planning("mse");
  AIGC_CHECK(numel_of(shape(pred)) == numel_of(shape(target)), "mse: pred and target sizes differ");
  Node n(OpKind::Mse);
  n.in[0] = pred;
  n.in[1] = target;
  return node_push(std::move(n), {1});
}

void Graph::allocate() {
  check_planning("allocate");
  // Layout: params | param grads (each flat, in creation order); activations: values, then
  // gradients (one contiguous run so backward() clears them with one memset), then aux, scratch.
  int64_t n_param = 0;
  for (ParamInfo& p : params_) {
    p.offset = n_param;
    n_param += p.numel;  // unpadded: the flat arrays are one vector for the optimiser
  }
  int64_t n_val = 0;
  for (const VarInfo& v : vars_)
    if (!v.is_param && v.alias < 0) n_val += round_up16(numel_of(v.shape));
  int64_t n_aux = 0;
  for (const Node& n : nodes_)
    if (!n.aux_shape.empty()) n_aux += round_up16(numel_of(n.aux_shape));
  n_param_ = n_param;
  n_act_ = 2 * n_val + n_aux + round_up16(n_scratch_);
  param_buf_ = buffer_alloc(static_cast<size_t>(std::max<int64_t>(n_param, 1)) * 4);
  grad_buf_ = buffer_alloc(static_cast<size_t>(std::max<int64_t>(n_param, 1)) * 4);
  act_buf_ = buffer_alloc(static_cast<size_t>(std::max<int64_t>(n_act_, 1)) * 4);
  float* pv = static_cast<float*>(param_buf_.get());
  float* pg = static_cast<float*>(grad_buf_.get());
  float* av = static_cast<float*>(act_buf_.get());
  float* ag = av + n_val;
  float* aux = av + 2 * n_val;
  size_t pi = 0;
  for (VarInfo& v : vars_) {
    if (v.alias >= 0) continue;  // below, once its root has storage
    if (v.is_param) {
      const ParamInfo& p = params_[pi++];
      v.value = Tensor::view_of(DType::F32, v.shape, pv + p.offset, param_buf_);
      v.grad = Tensor::view_of(DType::F32, v.shape, pg + p.offset, grad_buf_);
    } else {
      v.value = Tensor::view_of(DType::F32, v.shape, av, act_buf_);
      v.grad = Tensor::view_of(DType::F32, v.shape, ag, act_buf_);
      av += round_up16(numel_of(v.shape));
      ag += round_up16(numel_of(v.shape));
    }
  }
  for (VarInfo& v : vars_)
    if (v.alias >= 0) {
      VarInfo& root = vars_[static_cast<size_t>(v.alias)];
      v.value = Tensor::view_of(DType::F32, v.shape, root.value.data(), root.is_param ? param_buf_ : act_buf_);
      v.grad = Tensor::view_of(DType::F32, v.shape, root.grad.data(), root.is_param ? grad_buf_ : act_buf_);
    }
  for (Node& n : nodes_)
    if (!n.aux_shape.empty()) {
      n.aux = Tensor::view_of(DType::F32, n.aux_shape, aux, act_buf_);
      aux += round_up16(numel_of(n.aux_shape));
    }
  for (Node& n : nodes_)
    if (n.kind == OpKind::Rope) {
      const std::array<int64_t, 4> s4{n.B, n.T, n.H, shape(n.out)[1] / n.H};
      n.x4 = Tensor::view_of(DType::F32, s4, value(n.in[0]).data(), act_buf_);
      n.y4 = Tensor::view_of(DType::F32, s4, value(n.out).data(), act_buf_);
      n.dx4 = Tensor::view_of(DType::F32, s4, grad(n.in[0]).data(), act_buf_);
      n.dy4 = Tensor::view_of(DType::F32, s4, grad(n.out).data(), act_buf_);
    }
  scratch_ = Tensor::view_of(DType::F32, std::array<int64_t, 1>{std::max<int64_t>(n_scratch_, 1)}, aux, act_buf_);
  std::memset(param_buf_.get(), 0, static_cast<size_t>(n_param) * 4);
  allocated_ = true;
}

void Graph::node_forward(Node& n) {
  Tensor& y = value(n.out);
  switch (n.kind) {
    case OpKind::Embedding:
      reference_ ? ops::ref::embedding(value(n.in[0]), ids_data(n.ids), y)
                 : ops::embedding(value(n.in[0]), ids_data(n.ids), y);
      break;
    case OpKind::RmsNorm:
      reference_ ? ops::ref::rms_norm(value(n.in[0]), &value(n.in[1]), n.eps, y)
                 : ops::rms_norm(value(n.in[0]), &value(n.in[1]), n.eps, y);
      break;
    case OpKind::Linear: {
      const Tensor* b = n.in[2].valid() ? &value(n.in[2]) : nullptr;
      reference_ ? ops::ref::linear(value(n.in[0]), value(n.in[1]), b, y) : ops::linear(value(n.in[0]), value(n.in[1]), b, y);
      break;
    }
    case OpKind::Conv2d: {
      const Tensor* b = n.in[2].valid() ? &value(n.in[2]) : nullptr;
      reference_ ? grad::ref::conv2d_forward(value(n.in[0]), value(n.in[1]), b, y, n.stride, n.pad)
                 : grad::conv2d_forward(value(n.in[0]), value(n.in[1]), b, y, n.stride, n.pad);
      break;
    }
    case OpKind::GroupNorm:
      reference_ ? ops::ref::group_norm(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.groups, n.eps, y)
                 : ops::group_norm(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.groups, n.eps, y);
      break;
    case OpKind::LayerNorm:
      reference_ ? ops::ref::layer_norm(value(n.in[0]), &value(n.in[1]), &value(n.in[2]), n.eps, y)
                 : ops::layer_norm(value(n.in[0]), &value(n.in[1]), &value(n.in[2]), n.eps, y);
      break;
    case OpKind::Upsample2:
      reference_ ? ops::ref::upsample_nearest(value(n.in[0]), 2, y) : ops::upsample_nearest(value(n.in[0]), 2, y);
      break;
    case OpKind::ConcatChannels: {
      const Tensor xs[2] = {value(n.in[0]), value(n.in[1])};  // (Tensor copies: shape arrays, no heap)
      reference_ ? ops::ref::concat(xs, 1, y) : ops::concat(xs, 1, y);
      break;
    }
    case OpKind::AddChannel:
      reference_ ? grad::ref::add_channel_forward(value(n.in[0]), value(n.in[1]), y)
                 : grad::add_channel_forward(value(n.in[0]), value(n.in[1]), y);
      break;
    case OpKind::Transpose12:
      reference_ ? grad::ref::transpose12_forward(value(n.in[0]), y) : grad::transpose12_forward(value(n.in[0]), y);
      break;
    case OpKind::Mha:
      reference_ ? grad::ref::mha_forward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.mha, y, n.aux)
                 : grad::mha_forward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.mha, y, n.aux);
      break;
    case OpKind::Mse:
      y.ptr<float>()[0] = reference_ ? grad::ref::mse_forward(value(n.in[0]), value(n.in[1]))
                                     : grad::mse_forward(value(n.in[0]), value(n.in[1]));
      break;
    case OpKind::Rope:
      reference_ ? ops::ref::rope(n.x4, n.positions, n.rope, n.y4) : ops::rope(n.x4, n.positions, n.rope, n.y4);
      break;
    case OpKind::Attention:
      reference_ ? grad::ref::attention_forward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.attn, y, n.aux, scratch_)
                 : grad::attention_forward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.attn, y, n.aux, scratch_);
      break;
    case OpKind::Silu:
      reference_ ? ops::ref::silu(value(n.in[0]), y) : ops::silu(value(n.in[0]), y);
      break;
    case OpKind::Mul:
      reference_ ? ops::ref::mul(value(n.in[0]), value(n.in[1]), y) : ops::mul(value(n.in[0]), value(n.in[1]), y);
      break;
    case OpKind::Add:
      reference_ ? ops::ref::add(value(n.in[0]), value(n.in[1]), y) : ops::add(value(n.in[0]), value(n.in[1]), y);
      break;
    case OpKind::CrossEntropy:
      y.ptr<float>()[0] = reference_ ? grad::ref::cross_entropy_forward(value(n.in[0]), ids_data(n.ids), n.aux)
                                     : grad::cross_entropy_forward(value(n.in[0]), ids_data(n.ids), n.aux);
      break;
  }
}

void Graph::node_backward(Node& n) {
  const Tensor& dy = grad(n.out);
  switch (n.kind) {
    case OpKind::Embedding:
      reference_ ? grad::ref::embedding_backward(ids_data(n.ids), dy, grad(n.in[0]))
                 : grad::embedding_backward(ids_data(n.ids), dy, grad(n.in[0]));
      break;
    case OpKind::RmsNorm:
      reference_ ? grad::ref::rms_norm_backward(value(n.in[0]), value(n.in[1]), n.eps, dy, grad(n.in[0]), grad(n.in[1]))
                 : grad::rms_norm_backward(value(n.in[0]), value(n.in[1]), n.eps, dy, grad(n.in[0]), grad(n.in[1]));
      break;
    case OpKind::Linear:
      reference_ ? grad::ref::linear_backward(value(n.in[0]), value(n.in[1]), dy, &grad(n.in[0]), &grad(n.in[1]), scratch_)
                 : grad::linear_backward(value(n.in[0]), value(n.in[1]), dy, &grad(n.in[0]), &grad(n.in[1]), scratch_);
      if (n.in[2].valid())
        reference_ ? grad::ref::bias_backward(dy, grad(n.in[2])) : grad::bias_backward(dy, grad(n.in[2]));
      break;
    case OpKind::Conv2d: {
      Tensor* db = n.in[2].valid() ? &grad(n.in[2]) : nullptr;
      reference_ ? grad::ref::conv2d_backward(value(n.in[0]), value(n.in[1]), dy, n.stride, n.pad, &grad(n.in[0]),
                                              &grad(n.in[1]), db, scratch_)
                 : grad::conv2d_backward(value(n.in[0]), value(n.in[1]), dy, n.stride, n.pad, &grad(n.in[0]),
                                         &grad(n.in[1]), db, scratch_);
      break;
    }
    case OpKind::GroupNorm:
      reference_ ? grad::ref::group_norm_backward(value(n.in[0]), value(n.in[1]), n.groups, n.eps, dy, grad(n.in[0]),
                                                  grad(n.in[1]), grad(n.in[2]))
                 : grad::group_norm_backward(value(n.in[0]), value(n.in[1]), n.groups, n.eps, dy, grad(n.in[0]),
                                             grad(n.in[1]), grad(n.in[2]));
      break;
    case OpKind::LayerNorm:
      reference_ ? grad::ref::layer_norm_backward(value(n.in[0]), value(n.in[1]), n.eps, dy, grad(n.in[0]),
                                                  grad(n.in[1]), grad(n.in[2]))
                 : grad::layer_norm_backward(value(n.in[0]), value(n.in[1]), n.eps, dy, grad(n.in[0]), grad(n.in[1]),
                                             grad(n.in[2]));
      break;
    case OpKind::Upsample2:
      reference_ ? grad::ref::upsample_nearest2_backward(dy, grad(n.in[0]))
                 : grad::upsample_nearest2_backward(dy, grad(n.in[0]));
      break;
    case OpKind::ConcatChannels:
      reference_ ? grad::ref::concat_channels_backward(dy, grad(n.in[0]), grad(n.in[1]))
                 : grad::concat_channels_backward(dy, grad(n.in[0]), grad(n.in[1]));
      break;
    case OpKind::AddChannel:
      reference_ ? grad::ref::add_backward(dy, grad(n.in[0])) : grad::add_backward(dy, grad(n.in[0]));
      reference_ ? grad::ref::add_channel_backward(dy, grad(n.in[1])) : grad::add_channel_backward(dy, grad(n.in[1]));
      break;
    case OpKind::Transpose12:
      reference_ ? grad::ref::transpose12_backward(dy, grad(n.in[0])) : grad::transpose12_backward(dy, grad(n.in[0]));
      break;
    case OpKind::Mha:
      reference_ ? grad::ref::mha_backward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.aux, n.mha, dy,
                                           grad(n.in[0]), grad(n.in[1]), grad(n.in[2]))
                 : grad::mha_backward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.aux, n.mha, dy, grad(n.in[0]),
                                      grad(n.in[1]), grad(n.in[2]));
      break;
    case OpKind::Mse:  // the target gets no gradient
      reference_ ? grad::ref::mse_backward(value(n.in[0]), value(n.in[1]), dy.ptr<float>()[0], grad(n.in[0]))
                 : grad::mse_backward(value(n.in[0]), value(n.in[1]), dy.ptr<float>()[0], grad(n.in[0]));
      break;
    case OpKind::Rope:
      reference_ ? grad::ref::rope_backward(n.dy4, n.positions, n.rope, n.dx4)
                 : grad::rope_backward(n.dy4, n.positions, n.rope, n.dx4);
      break;
    case OpKind::Attention:
      reference_ ? grad::ref::attention_backward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.aux, n.attn, dy,
                                                 grad(n.in[0]), grad(n.in[1]), grad(n.in[2]), scratch_)
                 : grad::attention_backward(value(n.in[0]), value(n.in[1]), value(n.in[2]), n.aux, n.attn, dy,
                                            grad(n.in[0]), grad(n.in[1]), grad(n.in[2]), scratch_);
      break;
    case OpKind::Silu:
      reference_ ? grad::ref::silu_backward(value(n.in[0]), dy, grad(n.in[0]))
                 : grad::silu_backward(value(n.in[0]), dy, grad(n.in[0]));
      break;
    case OpKind::Mul: {
      // mul(a, a) is legal: both contributions land in the same gradient.
      reference_ ? grad::ref::mul_backward(value(n.in[0]), value(n.in[1]), dy, &grad(n.in[0]), &grad(n.in[1]))
                 : grad::mul_backward(value(n.in[0]), value(n.in[1]), dy, &grad(n.in[0]), &grad(n.in[1]));
      break;
    }
    case OpKind::Add:
      for (int i = 0; i < 2; ++i)
        reference_ ? grad::ref::add_backward(dy, grad(n.in[i])) : grad::add_backward(dy, grad(n.in[i]));
      break;
    case OpKind::CrossEntropy:
      reference_ ? grad::ref::cross_entropy_backward(value(n.in[0]), n.aux, ids_data(n.ids), dy.ptr<float>()[0], grad(n.in[0]))
                 : grad::cross_entropy_backward(value(n.in[0]), n.aux, ids_data(n.ids), dy.ptr<float>()[0], grad(n.in[0]));
      break;
  }
}

float Graph::forward(Var loss) {
  AIGC_ASSERT(allocated_, "Graph::forward before allocate()");
  for (Node& n : nodes_) {
    node_forward(n);
    if (n.out.id == loss.id) break;
  }
  return value(loss).ptr<float>()[0];
}

void Graph::backward(Var loss) {
  AIGC_ASSERT(value(loss).numel() == 1, "Graph::backward: the loss must be a scalar");
  const float one = 1.0f;
  backward(loss, std::span<const float>(&one, 1));
}

void Graph::backward(Var y, std::span<const float> dy) {
  AIGC_ASSERT(allocated_, "Graph::backward before allocate()");
  AIGC_ASSERT(static_cast<int64_t>(dy.size()) == value(y).numel(), "Graph::backward: dy of {} for {}", dy.size(),
              value(y).shape_str());
  std::memset(grad_buf_.get(), 0, static_cast<size_t>(n_param_) * 4);
  // Activation gradients: one contiguous run (allocate() placed them so).
  float* ag = nullptr;
  int64_t n_val = 0;
  for (const VarInfo& v : vars_)
    if (!v.is_param && v.alias < 0) {
      if (!ag) ag = const_cast<float*>(v.grad.ptr<float>());
      n_val += round_up16(numel_of(v.shape));
    }
  if (ag) std::memset(ag, 0, static_cast<size_t>(n_val) * 4);
  std::memcpy(grad(y).data(), dy.data(), dy.size() * 4);
  size_t end = nodes_.size();
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].out.id == y.id) end = i + 1;
  for (size_t i = end; i-- > 0;) node_backward(nodes_[i]);
}

}  // namespace aigc::train
