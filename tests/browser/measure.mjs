// Measures the pricing page and the customer's billing page for BENCHMARKS.md (numbers, never a pass/fail): the
// bytes a first visit transfers (HTML + JS + wasm + CSS as served, compressed), the time from an input event to the
// updated #total, and on the billing page the time from typing a cap to its consequences on screen.
//
//   node tests/browser/measure.mjs     (TALLY_BIN=… to pick the binary; default target/debug/tally: the sizes and
//                                       the browser-side latency do not depend on how the server was built)
import { ADMIN, api, launchChromium, startTally } from './harness.mjs';

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

  // 3. The billing page: a customer with usage on two products, opened through a portal link; its transfer, and
  //    typed cap → consequence text updated, 300 times.
  const start = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)).toISOString();
  await api(tally.url, 'POST', '/v1/customers', { id: 'measure', name: 'Measure', billing_anchor: start }, ADMIN);
  const at = new Date(Date.now() - 60_000).toISOString();
  await api(tally.url, 'POST', '/v1/usage', { events: [
    { id: 'm1', customer_id: 'measure', meter: 'recordings', quantity: '40000', timestamp: at },
    { id: 'm2', customer_id: 'measure', meter: 'events', quantity: '3000000', timestamp: at }] }, ADMIN);
  const [, session] = await api(tally.url, 'POST', '/v1/customers/measure/portal-sessions', {}, ADMIN);
  const billing = await browser.newContext();
  const bpage = await billing.newPage();
  const bresponses = [];
  bpage.on('response', (r) => bresponses.push(r));
  await bpage.goto(session.url);
  await bpage.waitForSelector('body[data-hydrated="true"]');
  let btotal = 0;
  console.log('billing page, first visit (through the portal link), empty cache:');
  for (const r of bresponses) {
    const sizes = await r.request().sizes();
    const bytes = sizes.responseBodySize + sizes.responseHeadersSize;
    btotal += bytes;
    console.log(`  ${new URL(r.url()).pathname.slice(0, 28).padEnd(28)} ${String(r.status()).padEnd(4)} ${String(r.headers()['content-encoding'] ?? 'identity').padEnd(9)} ${String(bytes).padStart(8)} B on the wire`);
  }
  console.log(`  total transferred: ${btotal} B (${(btotal / 1024).toFixed(1)} KiB)`);
  const capSamples = await bpage.evaluate(async () => {
    const input = document.querySelector('#cap-session_replay');
    const effect = document.querySelector('#cap-effect-session_replay');
    const out = { dom: [], frame: [] };
    for (let i = 0; i < 300; i++) {
      const before = effect.textContent;
      const changed = new Promise((resolve) => {
        const observer = new MutationObserver(() => {
          if (effect.textContent !== before) { observer.disconnect(); resolve(performance.now()); }
        });
        observer.observe(effect, { attributes: true, childList: true, characterData: true, subtree: true });
      });
      input.value = String(100 + i * 7);
      const t0 = performance.now();
      input.dispatchEvent(new Event('input', { bubbles: true }));
      const t1 = await changed;
      await new Promise((r) => requestAnimationFrame(() => r()));
      out.dom.push(t1 - t0);
      out.frame.push(performance.now() - t0);
    }
    return out;
  });
  console.log('typed cap → its consequences on screen (300 inputs on #cap-session_replay):');
  console.log(`  DOM updated:            ${stats(capSamples.dom)}`);
  console.log(`  next animation frame:   ${stats(capSamples.frame)}`);
  await billing.close();
} finally {
  await browser.close();
  await tally.stop();
}
