// The image studio against a real Stable Diffusion backend, in Debian's Chromium (playwright-core,
// headless, no sandbox, no background networking): `aigc serve --models DIR` with the tiny
// random-weight SD 1.5 checkpoint the pipeline twin writes (served by SdImageBackend) next to the
// tiny text model. Through the page: pick the SD model, txt2img at 64x64 in 4 steps with live
// progress (step of total, latent previews), the result in the gallery with its PNG's parameters
// text and a download that yields that PNG; img2img from a sketch drawn on the canvas; inpainting
// with a brushed mask (pixels outside the mask come back as the sketch). Screenshots go to
// $AIGC_TEST_OUT (build/server-tests): ui-sd-studio.png, ui-sd-sketch.png, ui-sd-inpaint.png.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { browserLaunch, outDir, sdModelsDir, serverStart } from './harness.mjs';
import { tinyModelWrite } from './tiny_model.mjs';

const dir = sdModelsDir();
tinyModelWrite(join(dir, 'tiny.gguf'));  // text and image models side by side, as in a real folder
const browser = await browserLaunch();
let srv, page;
before(async () => {
  srv = await serverStart([], { models: dir });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('pageerror', (e) => { throw e; });
  await page.goto(srv.url + '/');
  await page.click('#tab-studio');
  await page.waitForFunction(() => [...document.querySelectorAll('#img-model option')].some((o) => o.value === 'tiny-sd15'));
});
after(async () => {
  await browser.close();
  const r = await srv.stop();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.code, 0, 'SIGTERM ends aigc serve with status 0:\n' + srv.log());
});

// The text chunks of a PNG (tEXt only: what the server writes for ASCII text).
function pngText(png) {
  const out = {};
  for (let i = 8; i + 12 <= png.length;) {
    const len = png.readUInt32BE(i), type = png.toString('latin1', i + 4, i + 8);
    if (type === 'tEXt') {
      const data = png.toString('latin1', i + 8, i + 8 + len), nul = data.indexOf('\0');
      out[data.slice(0, nul)] = data.slice(nul + 1);
    }
    i += 12 + len;
  }
  return out;
}

// Submits the studio form with `submit` (a click or a key) and waits for gallery figure number
// `count`. Returns what the page showed while it ran: every status line and the natural size of
// every image the preview showed. Read from the mutation records, not the live elements: events
// that arrive in one network chunk are applied in one task, and each record keeps its own value.
async function generateWatched(count, submit) {
  await page.evaluate(() => {
    const status = document.querySelector('#img-status'), preview = document.querySelector('#img-preview');
    window.seen = { status: [], srcOld: [] };
    // Setting textContent inserts a new text node each time: its data is that update's text.
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) window.seen.status.push(n.textContent);
    }).observe(status, { childList: true });
    // Each src change records the value before it; the values shown are those, less the first, plus the last.
    new MutationObserver((records) => { for (const r of records) window.seen.srcOld.push(r.oldValue); })
      .observe(preview, { attributes: true, attributeFilter: ['src'], attributeOldValue: true });
  });
  await submit();
  await page.waitForFunction((n) => document.querySelectorAll('#gallery figure').length === n, count, { timeout: 120000 });
  return page.evaluate(async () => {
    const srcs = [...window.seen.srcOld.slice(1), document.querySelector('#img-preview').src];
    const sizes = [];
    for (const src of srcs) {
      const img = new Image();
      img.src = src;
      await img.decode();
      sizes.push(`${img.naturalWidth}x${img.naturalHeight}`);
    }
    return { status: window.seen.status, previews: sizes };
  });
}

// The newest gallery figure: caption, the parameters text shown, the download link.
async function galleryNewest() {
  return page.$eval('#gallery figure', (f) => ({
    caption: f.querySelector('figcaption').textContent,
    parameters: f.querySelector('pre.png-parameters') ? f.querySelector('pre.png-parameters').textContent : '',
    download: f.querySelector('a').download,
    href: f.querySelector('a').href,
  }));
}

test('txt2img on the SD model: progress with previews, gallery with parameters, a working download', async () => {
  await page.selectOption('#img-model', 'tiny-sd15');
  await page.fill('#img-prompt', 'a red bicycle leaning on a blue wall');
  await page.fill('#img-negative', 'blurry');
  await page.selectOption('#img-size', '64x64');
  await page.fill('#img-steps', '4');
  await page.selectOption('#img-sampler', 'euler');
  await page.fill('#img-seed', '11');
  const seen = await generateWatched(1, () => page.click('#img-go'));
  assert.match(await page.textContent('#img-status'), /Done: 1 image/);
  // Each of the 4 steps was reported; previews (latent resolution, 8x8) came before the image.
  for (let s = 1; s <= 4; ++s) assert.ok(seen.status.includes(`Image 1: step ${s} of 4`), seen.status.join(' | '));
  assert.ok(seen.previews.length >= 2, `previews: ${seen.previews.join(', ')}`);
  assert.equal(seen.previews[0], '8x8', 'the first preview is the latent approximation');
  assert.equal(seen.previews.at(-1), '64x64', 'the final image replaces the preview');
  const g = await galleryNewest();
  assert.match(g.caption, /a red bicycle leaning on a blue wall \| neg: blurry \| 64x64, 4 steps, euler, cfg 7, seed 11, txt2img/);
  // The PNG's own A1111 parameters text, as the backend wrote it.
  assert.match(g.parameters, /^a red bicycle leaning on a blue wall\nNegative prompt: blurry\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 11, Size: 64x64/);
  assert.doesNotMatch(g.parameters, /Denoising strength/);
  // The download link hands over that PNG.
  assert.equal(g.download, 'aigc-11.png');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#gallery figure a')]);
  assert.equal(download.suggestedFilename(), 'aigc-11.png');
  const png = readFileSync(await download.path());
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [64, 64]);
  assert.equal(pngText(png).parameters, g.parameters);
  await page.click('#gallery figure summary');  // open the parameters for the screenshot
  await page.screenshot({ path: join(outDir, 'ui-sd-studio.png'), fullPage: true });
});

test('img2img from a sketch drawn on the canvas, on the SD model', async () => {
  await page.click('#tool-clear');
  await page.click('#tool-sketch');
  const box = await (await page.$('#canvas-mask')).boundingBox();
  // A house: a filled-in square body (thick strokes) and a roof.
  await page.$eval('#tool-size', (r) => { r.value = '12'; });
  for (let y = 0.55; y <= 0.85; y += 0.1) {
    await page.mouse.move(box.x + box.width * 0.25, box.y + box.height * y); await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.75, box.y + box.height * y, { steps: 6 }); await page.mouse.up();
  }
  await page.$eval('#tool-color', (c) => { c.value = '#b03020'; });
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.5); await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2, { steps: 6 });
  await page.mouse.move(box.x + box.width * 0.8, box.y + box.height * 0.5, { steps: 6 }); await page.mouse.up();
  await page.check('input[name=img-mode][value=img2img]');
  await page.fill('#img-strength', '0.75');
  await page.fill('#img-prompt', 'a cottage with a red roof, ein Häuschen');  // not ASCII: an iTXt chunk
  await page.focus('#img-prompt');
  const seen = await generateWatched(2, () => page.keyboard.press('Control+Enter'));
  // int(4 * 0.75) = 3 sampler steps run from the noised sketch (diffusers' img2img convention);
  // progress and previews both count of those 3.
  const totals = seen.status.map((t) => /step \d+ of (\d+)/.exec(t)).filter(Boolean).map((m) => m[1]);
  assert.ok(seen.status.includes('Image 1: step 3 of 3') && totals.every((t) => t === '3'), seen.status.join(' | '));
  assert.ok(seen.previews.includes('8x8'), `previews: ${seen.previews.join(', ')}`);
  const g = await galleryNewest();
  assert.match(g.caption, /a cottage with a red roof, ein Häuschen .* 64x64, 4 steps, euler, cfg 7, seed 11, img2img/);
  assert.match(g.parameters, /^a cottage with a red roof, ein Häuschen\n.*Seed: 11, Size: 64x64, .*Denoising strength: 0\.75/s);
  assert.doesNotMatch(g.parameters, /Mask/);
  await page.screenshot({ path: join(outDir, 'ui-sd-sketch.png'), fullPage: true });
});

test('inpainting with a brushed mask, on the SD model: outside the mask the sketch comes back', async () => {
  const box = await (await page.$('#canvas-mask')).boundingBox();
  await page.click('#tool-mask');
  await page.$eval('#tool-size', (r) => { r.value = '10'; });
  await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.1); await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.9, { steps: 8 }); await page.mouse.up();
  await page.check('input[name=img-mode][value=inpaint]');
  await page.fill('#img-prompt', 'a cottage with a chimney');
  await page.focus('#img-prompt');
  await generateWatched(3, () => page.keyboard.press('Control+Enter'));
  const g = await galleryNewest();
  assert.match(g.caption, /a cottage with a chimney .* 64x64, .* inpaint/);
  assert.match(g.parameters, /Denoising strength: 0\.75, Mask: yes/);
  // The pipeline ends with a pixel composite (mask * generated + (1 - mask) * init), so where the
  // brush did not paint the result is the sketch, up to 8-bit rounding; under the brush it is not.
  const diff = await page.evaluate(async (href) => {
    const img = new Image();
    img.src = href;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const out = ctx.getImageData(0, 0, c.width, c.height).data;
    const init = document.querySelector('#canvas-image').getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const mask = document.querySelector('#canvas-mask').getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let keptMax = 0, paintedChanged = 0, painted = 0;
    for (let i = 0; i < out.length; i += 4) {
      const d = Math.max(...[0, 1, 2].map((k) => Math.abs(out[i + k] - init[i + k])));
      if (mask[i + 3] === 0) keptMax = Math.max(keptMax, d);
      else { ++painted; if (d > 8) ++paintedChanged; }
    }
    return { keptMax, painted, paintedChanged, size: [c.width, c.height] };
  }, g.href);
  assert.deepEqual(diff.size, [64, 64]);
  assert.ok(diff.keptMax <= 1, `outside the mask the sketch is kept (max difference ${diff.keptMax})`);
  assert.ok(diff.painted > 0 && diff.paintedChanged > diff.painted / 2, JSON.stringify(diff));
  await page.screenshot({ path: join(outDir, 'ui-sd-inpaint.png'), fullPage: true });
});
