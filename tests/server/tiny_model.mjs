// Writes a tiny random-weight Llama GGUF (v3) with a SentencePiece vocabulary (byte fallback, so
// any text encodes) and the chatml template: the model the Node and browser tests serve.
// The format is written here from the GGUF spec (ggml docs/gguf.md), independently of aigc's
// writer. Output rows of the special tokens are zero so greedy text does not end early, and word
// pieces outweigh byte tokens so the text is readable ASCII (as tests/unit/test_server_model.cpp).
import { writeFileSync } from 'node:fs';

const T = { U32: 4, I32: 5, F32: 6, BOOL: 7, STR: 8, ARR: 9 };

class Buf {
  constructor() { this.parts = []; this.length = 0; }
  push(b) { this.parts.push(b); this.length += b.length; }
  u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
  u64(v) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  i32(v) { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b); }
  f32(v) { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
  str(s) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
  bytes() { return Buffer.concat(this.parts); }
}

export function tinyModelWrite(path, nCtx = 512) {
  const tokens = ['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'];
  const types = [2, 3, 3, 3, 3];
  for (let b = 0; b < 256; ++b) { tokens.push('<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'); types.push(6); }
  for (const w of ['▁', '▁the', '▁a', '▁cat', '▁dog', '▁sat', '▁on', '▁mat', '▁Hello', '▁world',
                   'e', 't', 'a', 'o', 'n', 's', 'r', 'h', 'l', 'd', '.', ',', '!', '?']) { tokens.push(w); types.push(1); }
  const V = tokens.length, C = 32, L = 2, H = 4, Hkv = 2, D = C / H, F = 64;

  let seed = 12345;
  const uniform = () => { seed = (seed * 1103515245 + 12345) >>> 0; return (seed + 0.5) / 4294967296; };
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const rand = (n, scale) => Float32Array.from({ length: n }, () => normal() * scale);
  const ones = (n) => new Float32Array(n).fill(1);

  const kv = [
    ['general.architecture', T.STR, 'llama'], ['general.name', T.STR, 'aigc node test model'],
    ['llama.context_length', T.U32, nCtx], ['llama.embedding_length', T.U32, C], ['llama.block_count', T.U32, L],
    ['llama.feed_forward_length', T.U32, F], ['llama.attention.head_count', T.U32, H],
    ['llama.attention.head_count_kv', T.U32, Hkv], ['llama.attention.layer_norm_rms_epsilon', T.F32, 1e-5],
    ['llama.rope.freq_base', T.F32, 10000], ['llama.rope.dimension_count', T.U32, D],
    ['tokenizer.ggml.model', T.STR, 'llama'], ['tokenizer.ggml.tokens', [T.ARR, T.STR], tokens],
    ['tokenizer.ggml.scores', [T.ARR, T.F32], tokens.map((_, i) => -i)],
    ['tokenizer.ggml.token_type', [T.ARR, T.I32], types],
    ['tokenizer.ggml.bos_token_id', T.U32, 1], ['tokenizer.ggml.eos_token_id', T.U32, 2],
    ['tokenizer.chat_template', T.STR, 'chatml'],
  ];
  const s = 1 / Math.sqrt(C);
  const tensors = [['token_embd.weight', [V, C], rand(V * C, 1)]];
  for (let l = 0; l < L; ++l) {
    const p = `blk.${l}.`;
    tensors.push([p + 'attn_norm.weight', [C], ones(C)], [p + 'attn_q.weight', [C, C], rand(C * C, s)],
      [p + 'attn_k.weight', [Hkv * D, C], rand(Hkv * D * C, s)], [p + 'attn_v.weight', [Hkv * D, C], rand(Hkv * D * C, s)],
      [p + 'attn_output.weight', [C, C], rand(C * C, s)], [p + 'ffn_norm.weight', [C], ones(C)],
      [p + 'ffn_gate.weight', [F, C], rand(F * C, s)], [p + 'ffn_up.weight', [F, C], rand(F * C, s)],
      [p + 'ffn_down.weight', [C, F], rand(C * F, 1 / Math.sqrt(F))]);
  }
  const out = rand(V * C, 3 * s);  // [V, C]
  for (let id = 0; id < V; ++id) {
    const k = id < 5 ? 0 : id < 261 ? 0.25 : 1.5;
    for (let c = 0; c < C; ++c) out[id * C + c] *= k;
  }
  tensors.push(['output_norm.weight', [C], ones(C)], ['output.weight', [V, C], out]);

  const b = new Buf();
  b.push(Buffer.from('GGUF')); b.u32(3); b.u64(tensors.length); b.u64(kv.length);
  for (const [key, type, value] of kv) {
    b.str(key);
    if (Array.isArray(type)) {
      b.u32(T.ARR); b.u32(type[1]); b.u64(value.length);
      for (const v of value) type[1] === T.STR ? b.str(v) : type[1] === T.F32 ? b.f32(v) : b.i32(v);
    } else {
      b.u32(type);
      type === T.STR ? b.str(value) : type === T.F32 ? b.f32(value) : b.u32(value);
    }
  }
  const align = 32;
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    b.str(name); b.u32(shape.length);
    for (const d of [...shape].reverse()) b.u64(d);  // GGML order: innermost first
    b.u32(0);  // F32
    b.u64(offset);
    offset += Math.ceil(data.length * 4 / align) * align;
  }
  b.push(Buffer.alloc((align - (b.length % align)) % align));
  for (const [, , data] of tensors) {
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    b.push(bytes);
    b.push(Buffer.alloc((align - (bytes.length % align)) % align));
  }
  writeFileSync(path, b.bytes());
}

if (import.meta.url === `file://${process.argv[1]}`) tinyModelWrite(process.argv[2] || 'tiny.gguf');
