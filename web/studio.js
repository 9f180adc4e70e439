// The image studio: parameters, an init-image canvas (upload or sketch), a mask brush for
// inpainting, live progress with previews, and a gallery. Talks to /v1/images/generations
// (txt2img) and /v1/images/edits (img2img, inpaint) with "stream": true for progress events.
'use strict';

const studio = { tool: 'sketch', controller: null, drawing: false, last: null };

function el(id) { return document.getElementById(id); }

function canvasPoint(canvas, e) {
  const r = canvas.getBoundingClientRect();
  return { x: (e.clientX - r.left) * canvas.width / r.width, y: (e.clientY - r.top) * canvas.height / r.height };
}

function canvasInit() {
  const img = el('canvas-image'), mask = el('canvas-mask');
  const ictx = img.getContext('2d');
  ictx.fillStyle = '#fff'; ictx.fillRect(0, 0, img.width, img.height);
  // The mask canvas sits on top and takes the pointer for both tools.
  const stroke = (e) => {
    const p = canvasPoint(mask, e);
    const ctx = studio.tool === 'mask' ? mask.getContext('2d') : ictx;
    ctx.lineCap = 'round'; ctx.lineJoin = 'round';
    ctx.lineWidth = Number(el('tool-size').value);
    ctx.strokeStyle = studio.tool === 'mask' ? '#ff00aa' : el('tool-color').value;
    ctx.beginPath();
    const from = studio.last || p;
    ctx.moveTo(from.x, from.y); ctx.lineTo(p.x, p.y); ctx.stroke();
    studio.last = p;
  };
  mask.addEventListener('pointerdown', (e) => { studio.drawing = true; studio.last = null; mask.setPointerCapture(e.pointerId); stroke(e); });
  mask.addEventListener('pointermove', (e) => { if (studio.drawing) stroke(e); });
  const end = () => { studio.drawing = false; studio.last = null; };
  mask.addEventListener('pointerup', end);
  mask.addEventListener('pointercancel', end);

  const toolSet = (t) => {
    studio.tool = t;
    el('tool-sketch').setAttribute('aria-pressed', t === 'sketch');
    el('tool-mask').setAttribute('aria-pressed', t === 'mask');
  };
  el('tool-sketch').addEventListener('click', () => toolSet('sketch'));
  el('tool-mask').addEventListener('click', () => toolSet('mask'));
  el('tool-clear-mask').addEventListener('click', () => mask.getContext('2d').clearRect(0, 0, mask.width, mask.height));
  el('tool-clear').addEventListener('click', () => {
    ictx.fillStyle = '#fff'; ictx.fillRect(0, 0, img.width, img.height);
    mask.getContext('2d').clearRect(0, 0, mask.width, mask.height);
  });
  el('img-upload').addEventListener('change', () => {
    const f = el('img-upload').files[0];
    if (!f) return;
    const url = URL.createObjectURL(f);
    const picture = new Image();
    picture.onload = () => {
      ictx.fillStyle = '#fff'; ictx.fillRect(0, 0, img.width, img.height);
      const s = Math.min(img.width / picture.width, img.height / picture.height);
      const w = picture.width * s, h = picture.height * s;
      ictx.drawImage(picture, (img.width - w) / 2, (img.height - h) / 2, w, h);
      URL.revokeObjectURL(url);
      const mode = document.querySelector('input[name=img-mode][value=img2img]');
      if (document.querySelector('input[name=img-mode]:checked').value === 'txt2img') mode.checked = true;
    };
    picture.src = url;
  });
  el('img-size').addEventListener('change', canvasResize);
  canvasResize();
}

// The canvases take the requested size (the init image must match the output).
function canvasResize() {
  const [w, h] = el('img-size').value.split('x').map(Number);
  for (const c of [el('canvas-image'), el('canvas-mask')]) {
    const keep = document.createElement('canvas');
    keep.width = c.width; keep.height = c.height;
    keep.getContext('2d').drawImage(c, 0, 0);
    c.width = w; c.height = h;
    const ctx = c.getContext('2d');
    if (c.id === 'canvas-image') { ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, w, h); }
    ctx.drawImage(keep, 0, 0, w, h);
  }
  el('canvas-image').parentElement.style.aspectRatio = w + ' / ' + h;
}

function canvasBlob(canvas) { return new Promise((resolve) => canvas.toBlob(resolve, 'image/png')); }

// White where the brush painted, black elsewhere (the convention of OpenAI-style inpainting masks).
function maskBlob() {
  const m = el('canvas-mask');
  const out = document.createElement('canvas');
  out.width = m.width; out.height = m.height;
  const src = m.getContext('2d').getImageData(0, 0, m.width, m.height);
  const ctx = out.getContext('2d');
  const dst = ctx.createImageData(m.width, m.height);
  for (let i = 0; i < src.data.length; i += 4) {
    const v = src.data[i + 3] > 0 ? 255 : 0;
    dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = v; dst.data[i + 3] = 255;
  }
  ctx.putImageData(dst, 0, 0);
  return canvasBlob(out);
}

// The text chunks of a PNG (tEXt, and uncompressed iTXt): { keyword: text }. The server writes the
// generation parameters as A1111 does, in a 'parameters' chunk, which the gallery shows as it is.
function pngText(b64) {
  const bin = atob(b64);
  const u32 = (i) => ((bin.charCodeAt(i) << 24) | (bin.charCodeAt(i + 1) << 16) | (bin.charCodeAt(i + 2) << 8) | bin.charCodeAt(i + 3)) >>> 0;
  const out = {};
  for (let i = 8; i + 12 <= bin.length;) {
    const len = u32(i), type = bin.slice(i + 4, i + 8), data = bin.slice(i + 8, i + 8 + len);
    i += 12 + len;
    const nul = data.indexOf('\0');
    if (nul < 0) continue;
    const key = data.slice(0, nul);
    if (type === 'tEXt') {
      out[key] = data.slice(nul + 1);  // Latin-1: one char per byte
    } else if (type === 'iTXt' && data.charCodeAt(nul + 1) === 0) {
      // keyword \0 compression-flag method language \0 translated-keyword \0 UTF-8 text
      const lang = data.indexOf('\0', nul + 3), tkey = lang < 0 ? -1 : data.indexOf('\0', lang + 1);
      if (tkey < 0) continue;
      const bytes = Uint8Array.from(data.slice(tkey + 1), (c) => c.charCodeAt(0));
      out[key] = new TextDecoder().decode(bytes);
    }
  }
  return out;
}

function galleryAdd(item, params) {
  const fig = document.createElement('figure');
  const img = document.createElement('img');
  const url = 'data:image/png;base64,' + item.b64_json;
  img.src = url;
  img.alt = params.prompt;
  const cap = document.createElement('figcaption');
  cap.textContent = `${params.prompt} | neg: ${params.negative_prompt || '-'} | ${params.size}, ${params.steps} steps, ` +
    `${params.sampler}, cfg ${params.cfg_scale}, seed ${item.seed}, ${params.mode}`;
  const a = document.createElement('a');
  a.href = url; a.download = `aigc-${item.seed}.png`; a.textContent = 'Download';
  fig.append(img, cap);
  const text = pngText(item.b64_json).parameters;
  if (text) {
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Parameters';
    const pre = document.createElement('pre');
    pre.className = 'png-parameters';
    pre.textContent = text;
    details.append(summary, pre);
    fig.append(details);
  }
  fig.append(a);
  el('gallery').prepend(fig);
}

async function studioGenerate() {
  const mode = document.querySelector('input[name=img-mode]:checked').value;
  const p = {
    model: el('img-model').value || undefined,
    prompt: el('img-prompt').value.trim(),
    negative_prompt: el('img-negative').value.trim() || undefined,
    steps: Number(el('img-steps').value), cfg_scale: Number(el('img-cfg').value),
    sampler: el('img-sampler').value || undefined, seed: Number(el('img-seed').value),
    size: el('img-size').value, n: Number(el('img-n').value), response_format: 'b64_json', stream: true,
  };
  if (!p.prompt) { el('img-status').textContent = 'Write a prompt first'; el('img-prompt').focus(); return; }
  let res;
  studio.controller = new AbortController();
  el('img-go').disabled = true; el('img-cancel').disabled = false;
  el('img-progress').value = 0;
  el('img-status').textContent = 'Queued…';
  try {
    if (mode === 'txt2img') {
      res = await window.aigcApi.fetch('/v1/images/generations', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(p), signal: studio.controller.signal,
      });
    } else {
      const form = new FormData();
      for (const [k, v] of Object.entries(p)) if (v !== undefined) form.append(k, String(v));
      form.append('strength', el('img-strength').value);
      form.append('image', await canvasBlob(el('canvas-image')), 'image.png');
      if (mode === 'inpaint') form.append('mask', await maskBlob(), 'mask.png');
      res = await window.aigcApi.fetch('/v1/images/edits', { method: 'POST', body: form, signal: studio.controller.signal });
    }
    if (!res.ok) throw new Error(await window.aigcApi.error(res));
    await window.aigcApi.events(res, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      if (ev.type === 'progress') {
        el('img-progress').value = ev.step / ev.total;
        el('img-status').textContent = `Image ${ev.image + 1}: step ${ev.step} of ${ev.total}`;
        if (ev.preview_b64) { el('img-preview').src = 'data:image/png;base64,' + ev.preview_b64; el('img-preview').hidden = false; }
      } else if (ev.type === 'result') {
        for (const item of ev.data) galleryAdd(item, ev.parameters);
        if (ev.data.length) { el('img-preview').src = 'data:image/png;base64,' + ev.data[0].b64_json; el('img-preview').hidden = false; }
        el('img-status').textContent = `Done: ${ev.data.length} image(s)`;
        el('img-progress').value = 1;
      }
    });
  } catch (e) {
    el('img-status').textContent = e.name === 'AbortError' ? 'Cancelled' : 'Error: ' + e.message;
  } finally {
    el('img-go').disabled = false; el('img-cancel').disabled = true; studio.controller = null;
    modelsLoad();  // "(not loaded)" marks change after first use (app.js)
  }
}

document.addEventListener('DOMContentLoaded', () => {
  canvasInit();
  el('img-form').addEventListener('submit', (e) => { e.preventDefault(); if (!studio.controller) studioGenerate(); });
  el('img-cancel').addEventListener('click', () => { if (studio.controller) studio.controller.abort(); });
  // Ctrl+Enter generates from anywhere in the form (Enter alone already submits from a one-line field).
  el('img-form').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); el('img-form').requestSubmit(); }
  });
  // Escape cancels a running generation (the chat page's Escape stops its reply the same way).
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && studio.controller && !el('page-studio').hidden) studio.controller.abort();
  });
});
