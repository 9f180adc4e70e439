// Shared by the Node tests: prerequisites (skip with exit code 77, which ctest reports as
// skipped), a tiny model folder, and a live `aigc serve` on a free loopback port.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyModelWrite } from './tiny_model.mjs';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const outDir = process.env.AIGC_TEST_OUT || join(root, 'build', 'server-tests');
mkdirSync(outDir, { recursive: true });

export function skip(reason) {
  console.log(`SKIP: ${reason}`);
  process.exit(77);
}

// The module from the repository's node_modules (npm ci), or a visible skip.
export async function requireModule(name) {
  const req = createRequire(join(root, 'package.json'));
  try {
    return await import(req.resolve(name));
  } catch (e) {
    skip(`${name} is not installed (run scripts/setup, which runs 'npm ci'): ${e.message.split('\n')[0]}`);
  }
}

export function aigcBin() {
  const bin = process.env.AIGC_BIN || join(root, 'build', 'aigc');
  if (!existsSync(bin)) skip(`aigc binary not found at ${bin} (build first, or set AIGC_BIN)`);
  return bin;
}

export function modelsDir() {
  const dir = mkdtempSync(join(tmpdir(), 'aigc-node-'));
  tinyModelWrite(join(dir, 'tiny.gguf'));
  return dir;
}

// A models folder holding the tiny random-weight SD 1.5 single-file checkpoint the pipeline twin
// writes (build/ref/sd_pipe_sd15.safetensors, from tests/ref/gen_all.py) as 'tiny-sd15', and
// $AIGC_CLIP_VOCAB set to the shared CLIP vocabulary; a visible skip when either is missing.
export function sdModelsDir() {
  const refDir = process.env.AIGC_REF_DIR || join(root, 'build', 'ref');
  const ckpt = join(refDir, 'sd_pipe_sd15.safetensors');
  const vocab = resolve(process.env.AIGC_SHARED || join(root, '..', 'shared'), 'tokenizers/clip/bpe_simple_vocab_16e6.txt.gz');
  if (!existsSync(ckpt)) skip(`${ckpt} not found (the PyTorch twins write it: tests/ref/gen_all.py)`);
  if (!existsSync(vocab)) skip(`CLIP vocabulary not found at ${vocab} (set AIGC_SHARED)`);
  const dir = mkdtempSync(join(tmpdir(), 'aigc-node-sd-'));
  copyFileSync(ckpt, join(dir, 'tiny-sd15.safetensors'));
  process.env.AIGC_CLIP_VOCAB = vocab;
  return dir;
}

// Debian's Chromium through playwright-core: headless, no sandbox, no background networking.
// Resolves to the Browser; a visible skip when chromium or playwright-core is missing.
export async function browserLaunch() {
  const chromiumPath = [process.env.AIGC_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && existsSync(p));
  if (!chromiumPath) skip('chromium not found (apt-get install chromium, or set AIGC_CHROMIUM)');
  const pw = await requireModule('playwright-core');
  const chromium = pw.chromium || pw.default.chromium;
  return chromium.launch({
    executablePath: chromiumPath, headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run',
           '--disable-dev-shm-usage'],
  });
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
    s.on('error', rej);
  });
}

// Starts `aigc serve --models DIR --port P ...args`; resolves when /health answers.
export async function serverStart(args = [], { models } = {}) {
  const dir = models || modelsDir();
  const port = await freePort();
  const proc = spawn(aigcBin(), ['serve', '--models', dir, '--port', String(port), '--test-image-model', 'testpattern', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; ++i) {
    if (proc.exitCode !== null) throw new Error(`aigc serve exited early:\n${log}`);
    try { if ((await fetch(url + '/health')).ok) break; } catch (e) { /* not up yet */ }
    if (i > 200) throw new Error(`aigc serve did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url, port, proc, dir,
    log: () => log,
    // SIGTERM; resolves with the exit status (graceful shutdown must give 0).
    async stop() {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const r = await exited;
      clearTimeout(timer);
      if (!models) rmSync(dir, { recursive: true, force: true });
      return r;
    },
  };
}

export async function metricValue(url, name, headers = {}) {
  const text = await (await fetch(url + '/metrics', { headers })).text();
  const m = new RegExp('^' + name.replace(/[{}"\\]/g, '\\$&') + ' (\\S+)$', 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}
