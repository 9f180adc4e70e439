// The web UI in Debian's Chromium, driven by playwright-core (headless, no sandbox, no background
// networking): chat through the page (streaming into a bubble), check that model text cannot
// inject HTML, generate images in the studio (txt2img, then inpaint from a sketch with a mask)
// against the test-pattern backend, drive the page from the keyboard, and keep screenshots in
// $AIGC_TEST_OUT (build/server-tests). browser_sd.test.mjs runs the studio on a real SD model.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { browserLaunch, outDir, serverStart } from './harness.mjs';

const browser = await browserLaunch();
let srv, page;
before(async () => {
  srv = await serverStart();
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('pageerror', (e) => { throw e; });
  await page.goto(srv.url + '/');
});
after(async () => {
  await browser.close();
  assert.equal((await srv.stop()).code, 0);
});

test('chat: a message streams a reply into the page', async () => {
  await page.waitForFunction(() => document.querySelectorAll('#chat-model option').length > 0 &&
    document.querySelector('#chat-model').value === 'tiny');
  await page.fill('#chat-max', '24');
  await page.focus('#chat-input');
  await page.keyboard.type('Hello there, how are you?');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /tokens in/.test(document.querySelector('#chat-status').textContent), null, { timeout: 60000 });
  const bubbles = await page.$$eval('.msg', (els) => els.map((e) => [e.className, e.textContent]));
  assert.equal(bubbles.length, 2);
  assert.match(bubbles[0][0], /user/);
  assert.equal(bubbles[0][1], 'Hello there, how are you?');
  assert.match(bubbles[1][0], /assistant/);
  assert.ok(bubbles[1][1].length > 0);
  assert.match(await page.textContent('#chat-status'), /24 tokens/);
  await page.screenshot({ path: join(outDir, 'ui-chat.png'), fullPage: true });
});

test('markdown from a model cannot inject HTML', async () => {
  const html = await page.evaluate(() => window.aigcMarkdown.render(
    '**bold** <img src=x onerror="window.pwned=1"> [a](javascript:alert(1)) [b](https://example.org/"onmouseover="x)\n```\n<script>x</script>\n```'));
  assert.match(html, /<strong>bold<\/strong>/);
  assert.doesNotMatch(html, /<img|<script|href="javascript/i);
  assert.match(html, /&lt;img src=x onerror=&quot;/);
  assert.doesNotMatch(html, /"onmouseover/);
  // And through the DOM: a bubble with that text holds no element but the formatting ones.
  const tags = await page.evaluate(() => {
    const d = document.createElement('div');
    d.innerHTML = window.aigcMarkdown.render('<b onclick=x>hi</b><iframe src=/></iframe>');
    return [...d.querySelectorAll('*')].map((e) => e.tagName);
  });
  assert.deepEqual(tags, ['P']);
});

test('image studio: txt2img with progress, then inpaint from a sketch, into the gallery', async () => {
  await page.click('#tab-studio');
  await page.waitForFunction(() => document.querySelector('#img-model').value === 'testpattern');
  await page.fill('#img-prompt', 'a lighthouse at dusk');
  await page.selectOption('#img-size', '256x256');
  await page.fill('#img-steps', '8');
  await page.fill('#img-seed', '7');
  await page.click('#img-go');
  await page.waitForFunction(() => document.querySelectorAll('#gallery figure').length === 1, null, { timeout: 60000 });
  assert.match(await page.textContent('#img-status'), /Done/);
  assert.match(await page.textContent('#gallery figcaption'), /a lighthouse at dusk.*256x256, 8 steps.*seed 7, txt2img/);
  assert.equal(await page.$eval('#img-progress', (p) => p.value), 1);
  // Sketch on the canvas, paint a mask, inpaint.
  const box = await (await page.$('#canvas-mask')).boundingBox();
  await page.mouse.move(box.x + 20, box.y + 20); await page.mouse.down();
  await page.mouse.move(box.x + box.width - 20, box.y + box.height - 20, { steps: 8 }); await page.mouse.up();
  await page.click('#tool-mask');
  await page.mouse.move(box.x + box.width / 2, box.y + 10); await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height - 10, { steps: 8 }); await page.mouse.up();
  await page.check('input[name=img-mode][value=inpaint]');
  await page.fill('#img-prompt', 'a lighthouse in a storm');
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction(() => document.querySelectorAll('#gallery figure').length === 2, null, { timeout: 60000 });
  assert.match(await page.textContent('#gallery figure figcaption'), /a lighthouse in a storm.*inpaint/);
  const download = await page.$eval('#gallery figure a', (a) => [a.download, a.href.slice(0, 22)]);
  assert.deepEqual(download, [download[0], 'data:image/png;base64,']);
  await page.screenshot({ path: join(outDir, 'ui-studio.png'), fullPage: true });
});

// Tab from the focused element `count` times; the ids focused, each checked for a visible focus
// ring (the :focus-visible outline, which keyboard focus shows).
async function tabWalk(count) {
  const ids = [];
  for (let i = 0; i < count; ++i) {
    await page.keyboard.press('Tab');
    const [id, outline] = await page.evaluate(() => {
      const a = document.activeElement, st = getComputedStyle(a);
      return [a.id || a.name || a.tagName, st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 2];
    });
    assert.ok(outline, `${id} shows no focus outline`);
    ids.push(id);
  }
  return ids;
}

test('keyboard: tab order with visible focus, arrow keys on the tabs, Enter generates, Escape cancels', async () => {
  await page.click('#tab-studio');
  await page.focus('#tab-studio');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.getAttribute('#tab-chat', 'aria-selected'), 'true');
  assert.equal(await page.isHidden('#page-studio'), true);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-chat');
  // Chat: the page's controls in reading order (the inactive tab and the disabled Stop are skipped).
  assert.deepEqual(await tabWalk(8), ['key-button', 'chat-model', 'chat-temp', 'chat-max', 'chat-system', 'chat-clear',
    'chat-input', 'chat-send']);
  // Studio: parameters, Generate, the canvas tools, then the gallery (the newest image's parameters).
  await page.focus('#tab-chat');
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.isHidden('#page-studio'), false);
  assert.deepEqual(await tabWalk(21), ['key-button', 'img-model', 'img-prompt', 'img-negative', 'img-steps', 'img-cfg',
    'img-sampler', 'img-seed', 'img-size', 'img-n', 'img-mode', 'img-strength', 'img-go', 'img-upload', 'tool-sketch',
    'tool-mask', 'tool-color', 'tool-size', 'tool-clear-mask', 'tool-clear', 'SUMMARY']);
  // Enter in a one-line field generates; Escape cancels a running generation (150 steps of the
  // test pattern's 5 ms take long enough to catch).
  await page.check('input[name=img-mode][value=txt2img]');
  await page.fill('#img-steps', '150');
  await page.focus('#img-steps');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /step \d+ of 150/.test(document.querySelector('#img-status').textContent));
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.querySelector('#img-status').textContent === 'Cancelled');
  const before = await page.$$eval('#gallery figure', (f) => f.length);
  await page.fill('#img-steps', '3');
  await page.focus('#img-seed');
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('#gallery figure').length === n + 1, before);
  assert.match(await page.textContent('#gallery figcaption'), /3 steps/);
});

test('responsive: a phone-sized viewport has no horizontal scrolling', async () => {
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(srv.url + '/');
  for (const tab of ['#tab-chat', '#tab-studio']) {
    await phone.click(tab);
    const [scroll, width] = await phone.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `${tab}: page is ${scroll}px wide in a ${width}px viewport`);
  }
  await phone.screenshot({ path: join(outDir, 'ui-studio-phone.png'), fullPage: true });
  await phone.close();
});
