// The OpenAI-compatible API through the official `openai` npm client, against a live
// `aigc serve` on the tiny test model: chat and completions with and without streaming, images,
// and the error answers (malformed, oversized, unauthorised, unknown model, full queue).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { metricValue, requireModule, serverStart } from './harness.mjs';

const { default: OpenAI, toFile } = await requireModule('openai');

let srv, client;
before(async () => {
  srv = await serverStart(['--queue-size', '2', '--max-body', '1']);
  client = new OpenAI({ baseURL: srv.url + '/v1', apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, 'SIGTERM ends aigc serve with status 0:\n' + srv.log());
});

test('models lists the text model and the image model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ['testpattern', 'tiny']);
});

test('chat without streaming: text, usage, finish_reason', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 8, temperature: 0,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 8);
  assert.ok(r.choices[0].message.content.length > 0);
});

test('chat streaming gives the same text as without, and usage at the end', async () => {
  const body = { model: 'tiny', messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 12, temperature: 0 };
  const whole = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
});

test('seed, stop and n', async () => {
  const body = { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 16, temperature: 1, seed: 42, n: 2 };
  const a = await client.chat.completions.create(body);
  const b = await client.chat.completions.create(body);
  assert.equal(a.choices.length, 2);
  assert.deepEqual(a.choices.map((c) => c.message.content), b.choices.map((c) => c.message.content));
  // Sampled with a seed (greedy text of a random model loops on one token): reproducible and varied.
  const base = { model: 'tiny', prompt: 'the cat', max_tokens: 24, temperature: 0.8, seed: 3 };
  const full = (await client.completions.create(base)).choices[0].text;
  let ascii = null;
  for (let i = 1; i + 2 <= full.length && !ascii; ++i) {
    const pair = full.slice(i, i + 2);
    if (/^[ -~]{2}$/.test(pair) && full.indexOf(pair) === i) ascii = { 0: pair, index: i };
  }
  assert.ok(ascii, 'an ASCII pair to stop at in: ' + full);
  const cut = await client.completions.create({ ...base, stop: [ascii[0]] });
  assert.equal(cut.choices[0].text, full.slice(0, ascii.index));
  assert.equal(cut.choices[0].finish_reason, 'stop');
});

test('completions streaming', async () => {
  const stream = await client.completions.create({ model: 'tiny', prompt: 'the dog', max_tokens: 6, temperature: 0, stream: true });
  let text = '', n = 0;
  for await (const chunk of stream) { text += chunk.choices[0]?.text || ''; ++n; }
  const whole = await client.completions.create({ model: 'tiny', prompt: 'the dog', max_tokens: 6, temperature: 0 });
  assert.equal(text, whole.choices[0].text);
  assert.ok(n >= 2);
});

test('images: generations (b64_json) and edits (multipart)', async () => {
  const g = await client.images.generate({ model: 'testpattern', prompt: 'a fox', n: 2, size: '256x256', response_format: 'b64_json', steps: 3, seed: 5 });
  assert.equal(g.data.length, 2);
  for (const d of g.data) {
    const png = Buffer.from(d.b64_json, 'base64');
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.equal(png.readUInt32BE(16), 256);  // IHDR width
  }
  const init = Buffer.from(g.data[0].b64_json, 'base64');
  const e = await client.images.edit({
    model: 'testpattern', prompt: 'a fox in snow', image: await toFile(init, 'init.png', { type: 'image/png' }),
    mask: await toFile(init, 'mask.png', { type: 'image/png' }), size: '256x256', response_format: 'b64_json',
  });
  assert.equal(e.data.length, 1);
  await assert.rejects(client.images.generate({ model: 'testpattern', prompt: 'x', size: '100x9' }), (err) => err.status === 400);
  // An image the backend cannot decode fails after the job started: still a 400 naming the cause.
  await assert.rejects(client.images.edit({
    model: 'testpattern', prompt: 'x', image: await toFile(Buffer.from('not an image'), 'init.png', { type: 'image/png' }),
    size: '256x256', response_format: 'b64_json',
  }), (err) => err.status === 400 && /cannot read image/.test(err.message));
});

test('errors: unknown model 404, bad field 400, path escape 400, malformed JSON 400, oversized 413', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404 && e.error?.code === 'model_not_found');
  await assert.rejects(client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], temperature: 9 }),
    (e) => e.status === 400 && e.error?.param === 'temperature');
  await assert.rejects(client.chat.completions.create({ model: '../tiny', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && e.error?.code === 'invalid_model_name');
  const bad = await fetch(srv.url + '/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"model": ' });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.type, 'invalid_request_error');
  const big = await fetch(srv.url + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(2 << 20) }),
  });
  assert.equal(big.status, 413);
  assert.ok((await big.json()).error.message);
});

test('a full queue answers 503 with Retry-After; a client that leaves is cancelled', async () => {
  // --queue-size 2: two long streams fill it; the third request is refused.
  const controllers = [new AbortController(), new AbortController()];
  const streams = controllers.map((c) => client.chat.completions.create(
    { model: 'tiny', messages: [{ role: 'user', content: 'go' }], max_tokens: 450, temperature: 0, stream: true },
    { signal: c.signal }).catch(() => null));
  // Wait until both are in the queue (one generating, one waiting).
  const depth = 'aigc_queue_depth{model="tiny"}';
  for (let i = 0; i < 200 && (await metricValue(srv.url, depth)) < 2; ++i) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await metricValue(srv.url, depth), 2);
  const res = await fetch(srv.url + '/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
  });
  assert.equal(res.status, 503);
  assert.ok(Number(res.headers.get('retry-after')) > 0);
  assert.equal((await res.json()).error.code, 'queue_full');
  const before = await metricValue(srv.url, 'aigc_generations_cancelled_total');
  for (const c of controllers) c.abort();
  await Promise.all(streams);
  let after = before;
  for (let i = 0; i < 100 && after < before + 1; ++i) {
    await new Promise((r) => setTimeout(r, 50));
    after = await metricValue(srv.url, 'aigc_generations_cancelled_total');
  }
  assert.ok(after >= before + 1, `cancelled generations: ${before} -> ${after}`);
});

test('--api-key: 401 without or with a wrong key, 200 with it; /health stays open', async () => {
  const guarded = await serverStart(['--api-key', 'k-123']);
  try {
    const wrong = new OpenAI({ baseURL: guarded.url + '/v1', apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (e) => e.status === 401 && e.error?.type === 'authentication_error');
    assert.equal((await fetch(guarded.url + '/v1/models')).status, 401);
    assert.equal((await fetch(guarded.url + '/health')).status, 200);
    const right = new OpenAI({ baseURL: guarded.url + '/v1', apiKey: 'k-123', maxRetries: 0 });
    const r = await right.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(r.usage.completion_tokens, 2);
  } finally {
    assert.equal((await guarded.stop()).code, 0);
  }
});
