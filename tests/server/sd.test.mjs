// Stable Diffusion through `aigc serve` and the official `openai` client: a real (tiny, random-weight)
// SD 1.5 single-file checkpoint written by the pipeline twin (build/ref/sd_pipe_sd15.safetensors)
// in the models folder, served by SdImageBackend. Checks the model listing, a txt2img generation
// (PNG of the asked size carrying A1111's parameters chunk with the seed), that the same seed gives
// the same image, and a 400 for a size that is not a multiple of 8.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { requireModule, sdModelsDir, serverStart } from './harness.mjs';

const { default: OpenAI } = await requireModule('openai');
const dir = sdModelsDir();

let srv, client;
before(async () => {
  srv = await serverStart([], { models: dir });
  client = new OpenAI({ baseURL: srv.url + '/v1', apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  const r = await srv.stop();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.code, 0, 'SIGTERM ends aigc serve with status 0:\n' + srv.log());
});

test('the SD checkpoint is listed as an image model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('tiny-sd15'), ids.join(', '));
});

test('txt2img through the openai client: PNG with the parameters chunk, same seed same image', async () => {
  const ask = () => client.images.generate({ model: 'tiny-sd15', prompt: 'a red circle', n: 1, size: '64x64',
    response_format: 'b64_json', steps: 2, seed: 7, sampler: 'euler' });
  const a = await ask();
  assert.equal(a.data.length, 1);
  const png = Buffer.from(a.data[0].b64_json, 'base64');
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.equal(png.readUInt32BE(16), 64);  // IHDR width
  assert.equal(png.readUInt32BE(20), 64);  // IHDR height
  const text = png.toString('latin1');
  assert.ok(text.includes('parameters'), 'a parameters text chunk');
  assert.ok(text.includes('Seed: 7') && text.includes('Sampler: Euler') && text.includes('Size: 64x64'), text.slice(0, 400));
  const b = await ask();
  assert.equal(b.data[0].b64_json, a.data[0].b64_json, 'the same seed gives the same image');
  await assert.rejects(client.images.generate({ model: 'tiny-sd15', prompt: 'x', size: '60x64' }), (err) => err.status === 400);
});
