// A bounded load test on loopback: CLIENTS concurrent streaming chat clients, ROUNDS requests
// each, against a live `aigc serve` on the tiny model. Every request must succeed and stream to
// [DONE]; resident memory after the last round must not have grown past the first round by more
// than GROWTH_MIB (a leak per request would). Reports requests, concurrency, latency percentiles
// (time to first token and to the end) and peak RSS, printed and written to
// $AIGC_TEST_OUT/server-load.json.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { metricValue, outDir, serverStart } from './harness.mjs';

const CLIENTS = Number(process.env.AIGC_LOAD_CLIENTS || 16);
const ROUNDS = Number(process.env.AIGC_LOAD_ROUNDS || 6);
const MAX_TOKENS = 16;
const GROWTH_MIB = 16;

let srv;
before(async () => { srv = await serverStart(['--queue-size', String(CLIENTS * 2)]); });
after(async () => { assert.equal((await srv.stop()).code, 0, srv.log()); });

async function streamOnce(i) {
  const t0 = performance.now();
  const res = await fetch(srv.url + '/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: `client ${i}: hello` }],
      max_tokens: MAX_TOKENS, temperature: 0.8, seed: i, stream: true, stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', first = null, usage = null, done = false;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    if (first === null) first = performance.now() - t0;
    buf += dec.decode(value, { stream: true });
  }
  for (const ev of buf.split('\n\n')) {
    if (!ev.startsWith('data: ')) continue;
    if (ev === 'data: [DONE]') { done = true; continue; }
    const j = JSON.parse(ev.slice(6));
    if (j.error) throw new Error(j.error.message);
    if (j.usage) usage = j.usage;
  }
  if (!done) throw new Error('stream ended without [DONE]');
  if (!usage || usage.completion_tokens < 1) throw new Error('no usage');
  return { ttft: first, total: performance.now() - t0, tokens: usage.completion_tokens };
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };

test(`${CLIENTS} concurrent streaming clients x ${ROUNDS} rounds: no errors, no memory growth`, async () => {
  const results = [], errors = [];
  let rssFirstRound = 0;
  const t0 = performance.now();
  for (let round = 0; round < ROUNDS; ++round) {
    const batch = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, c) => streamOnce(round * CLIENTS + c)));
    for (const r of batch) r.status === 'fulfilled' ? results.push(r.value) : errors.push(String(r.reason));
    if (round === 0) rssFirstRound = await metricValue(srv.url, 'aigc_resident_memory_bytes');
  }
  const wall = (performance.now() - t0) / 1000;
  const rssEnd = await metricValue(srv.url, 'aigc_resident_memory_bytes');
  const rssPeak = await metricValue(srv.url, 'aigc_resident_memory_peak_bytes');
  const tokens = results.reduce((a, r) => a + r.tokens, 0);
  const report = {
    requests: results.length + errors.length, errors: errors.length, concurrency: CLIENTS, rounds: ROUNDS,
    max_tokens: MAX_TOKENS, wall_s: +wall.toFixed(2), tokens_per_s: +(tokens / wall).toFixed(1),
    ttft_ms: { p50: pct(results.map((r) => r.ttft), 50), p90: pct(results.map((r) => r.ttft), 90), p99: pct(results.map((r) => r.ttft), 99) },
    latency_ms: { p50: pct(results.map((r) => r.total), 50), p90: pct(results.map((r) => r.total), 90), p99: pct(results.map((r) => r.total), 99) },
    rss_mib: { after_first_round: +(rssFirstRound / 2 ** 20).toFixed(1), end: +(rssEnd / 2 ** 20).toFixed(1), peak: +(rssPeak / 2 ** 20).toFixed(1) },
  };
  for (const k of ['ttft_ms', 'latency_ms']) for (const p in report[k]) report[k][p] = Math.round(report[k][p]);
  console.log('load test:', JSON.stringify(report));
  writeFileSync(join(outDir, 'server-load.json'), JSON.stringify(report, null, 2) + '\n');
  assert.deepEqual(errors, []);
  assert.equal(results.length, CLIENTS * ROUNDS);
  assert.ok(rssEnd - rssFirstRound < GROWTH_MIB * 2 ** 20,
    `resident memory grew by ${((rssEnd - rssFirstRound) / 2 ** 20).toFixed(1)} MiB after the first round`);
});
