// Measures the pricing page for BENCHMARKS.md (numbers, never a pass/fail): the bytes a first visit transfers
// (HTML + JS + wasm + CSS as served, compressed) and the time from an input event to the updated #total.
//
//   node tests/browser/measure.mjs     (TALLY_BIN=… to pick the binary; default target/debug/tally: the sizes and
//                                       the browser-side latency do not depend on how the server was built)
import { launchChromium, startTally } from './harness.mjs';

const tally = await startTally();
const browser = await launchChromium();
try {
  // 1. Transfer size of a first visit (empty cache), as Chromium counts it: headers + encoded bodies.
  const context = await browser.newContext();
  const page = await context.newPage();
  const responses = [];
  page.on('response', (r) => responses.push(r));
  await page.goto(tally.url + '/?events=2000000&recordings=150000');
  await page.waitForSelector('body[data-hydrated="true"]');
  let total = 0;
  const rows = [];
  for (const r of responses) {
    const sizes = await r.request().sizes();
    const bytes = sizes.responseBodySize + sizes.responseHeadersSize;
    total += bytes;
    rows.push(`${new URL(r.url()).pathname.padEnd(28)} ${String(r.headers()['content-encoding'] ?? 'identity').padEnd(9)} ${String(sizes.responseBodySize).padStart(8)} B body ${String(bytes).padStart(8)} B on the wire`);
  }
  console.log('first visit, empty cache:');
  for (const row of rows) console.log('  ' + row);
  console.log(`  total transferred: ${total} B (${(total / 1024).toFixed(1)} KiB)`);
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return { domContentLoaded: Math.round(nav.domContentLoadedEventEnd), load: Math.round(nav.loadEventEnd) };
  });
  console.log(`  DOMContentLoaded ${timing.domContentLoaded} ms, load ${timing.load} ms (loopback)`);

  // 2. Input event → #total updated, 300 times: the DOM change (MutationObserver) and the next frame after it.
  const samples = await page.evaluate(async () => {
    const input = document.querySelector('#usage-events');
    const total = document.querySelector('#total');
    const out = { sync: [], dom: [], frame: [] };
    for (let i = 0; i < 300; i++) {
      const before = total.getAttribute('data-amount');
      const changed = new Promise((resolve) => {
        const observer = new MutationObserver(() => {
          if (total.getAttribute('data-amount') !== before) { observer.disconnect(); resolve(performance.now()); }
        });
        observer.observe(total, { attributes: true, childList: true, characterData: true, subtree: true });
      });
      input.value = String(3_000_000 + i * 17_000);
      const t0 = performance.now();
      input.dispatchEvent(new Event('input', { bubbles: true }));
      out.sync.push(performance.now() - t0);
      const t1 = await changed;
      await new Promise((r) => requestAnimationFrame(() => r()));
      const t2 = performance.now();
      out.dom.push(t1 - t0);
      out.frame.push(t2 - t0);
    }
    return out;
  });
  const stats = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(2);
    return `median ${q(0.5)} ms, p95 ${q(0.95)} ms, max ${s[s.length - 1].toFixed(2)} ms`;
  };
  console.log('input event → #total updated (300 inputs on #usage-events):');
  console.log(`  input handler returned: ${stats(samples.sync)}`);
  console.log(`  DOM updated:            ${stats(samples.dom)}`);
  console.log(`  next animation frame:   ${stats(samples.frame)}`);
  await context.close();
} finally {
  await browser.close();
  await tally.stop();
}
