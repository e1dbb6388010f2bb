// The customer's billing page in real headless Chromium against the real `tally serve` (SQLite, and PostgreSQL when
// TALLY_TEST_POSTGRES_URL names a server): a portal link opened, a cap typed (its consequences computed in the
// browser by billing-core, with no request until Save), saved, then usage past it sent through the API — the page
// shows the day the cap was reached, the usage dropped, the alerts, and the usage view's bill. The prediction the
// browser makes is the server's (random paces and caps, seeded); a cross-site form post is refused; the page at a
// phone's width in dark mode does not overflow.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ADMIN, ARTIFACTS, api, launchChromium, openPage, rng, startTally } from './harness.mjs';

const servers = [];
let browser;

/** The databases to run on: a fresh SQLite file always; PostgreSQL when the test run has one. */
function databases() {
  const out = [{ name: 'sqlite', database: undefined }];
  const pg = process.env.TALLY_TEST_POSTGRES_URL;
  if (pg) out.push({ name: 'postgres', database: pg });
  return out;
}

before(async () => {
  browser = await launchChromium();
  for (const db of databases()) {
    const tally = await startTally([], { database: db.database });
    servers.push({ ...db, tally });
  }
});

after(async () => {
  await browser?.close();
  for (const s of servers) await s.tally.stop();
});

/** The start of the current month, UTC: every new customer's period starts there. */
function monthStart() {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

/** A new customer (a unique id: PostgreSQL's database outlives one run of the server) and its key. */
async function customer(base, tag) {
  const id = `${tag}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  const [status, body] = await api(base, 'POST', '/v1/customers', { id, name: `Customer ${tag}`, billing_anchor: monthStart().toISOString() }, ADMIN);
  assert.equal(status, 201, JSON.stringify(body));
  return { id, key: body.api_key };
}

/** Sends `quantity` of `meter` as one event at `at` (default: a minute ago). */
async function usage(base, id, meter, quantity, at = new Date(Date.now() - 60_000)) {
  const event = { id: `${meter}-${quantity}-${at.getTime()}-${Math.random()}`, customer_id: id, meter, quantity: String(quantity), timestamp: at.toISOString() };
  const [status, body] = await api(base, 'POST', '/v1/usage', { events: [event] }, ADMIN);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.accepted ?? body.stored ?? 1, body.accepted ?? body.stored ?? 1);
}

/** Opens the customer's billing page through a portal link made with its key. */
async function openBilling(base, c, options = {}) {
  const [status, session] = await api(base, 'POST', `/v1/customers/${c.id}/portal-sessions`, {}, c.key);
  assert.equal(status, 201, JSON.stringify(session));
  const page = await openPage(browser, session.url, options);
  assert.ok(new URL(page.url()).pathname === '/billing', `the link lands on /billing: ${page.url()}`);
  assert.ok(!page.url().includes('/sessions/'), 'the token is not in the address bar');
  return page;
}

for (const db of databases()) {
  test(`${db.name}: a cap typed on the page shows its consequences, saves, and the page shows what it did`, async () => {
    const { tally } = servers.find((s) => s.name === db.name);
    const c = await customer(tally.url, 'cap');
    await usage(tally.url, c.id, 'recordings', 8000);
    const page = await openBilling(tally.url, c);
    assert.deepEqual(page.errors, []);
    const effect = page.locator('#cap-effect-session_replay');
    // Typing: consequences from billing-core in the browser, no request to the server until Save.
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.locator('#cap-session_replay').fill('50');
    await page.waitForFunction(() => document.querySelector('#cap-effect-session_replay').textContent.includes('$50.00'));
    const words = await effect.textContent();
    assert.match(words, /A \$50\.00 cap stops Session replay at 15,000 recordings a month\./);
    assert.match(words, /At your current pace it will (not be reached this period|be reached on \d{1,2} \w+ \d{4})/);
    await page.locator('#cap-session_replay').fill('5');
    await page.waitForFunction(() => document.querySelector('#cap-effect-session_replay').dataset.effect === 'next-period');
    assert.match(await effect.textContent(), /applies in full from the next period, and this period keeps its current amount/);
    await page.locator('#cap-session_replay').fill('');
    await page.waitForFunction(() => document.querySelector('#cap-effect-session_replay').dataset.effect === 'removed');
    await page.locator('#cap-session_replay').fill('50');
    await page.waitForFunction(() => document.querySelector('#cap-effect-session_replay').dataset.effect !== 'removed');
    assert.deepEqual(requests, [], 'no request while typing');
    // Save: a form post answered with a redirect to the page.
    await Promise.all([
      page.waitForURL((u) => u.pathname === '/billing' && u.search.includes('saved=')),
      page.locator('#product-session_replay .cap-form button[type=submit]').click(),
    ]);
    assert.match(await page.locator('.notice').textContent(), /Saved the cap on Session replay/);
    const [, limits] = await api(tally.url, 'GET', `/v1/customers/${c.id}/limits`, undefined, c.key);
    assert.deepEqual(limits, { session_replay: '50' });
    // Usage past the cap, through the API: 18,000 recordings against a cap that pays for 15,000.
    await usage(tally.url, c.id, 'recordings', 10000, new Date(Date.now() - 30_000));
    await page.reload();
    await page.waitForSelector('body[data-hydrated="true"]');
    const today = new Date().toLocaleDateString('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
    const reached = await page.locator('#product-session_replay .reached').textContent();
    assert.ok(reached.includes(`Cap reached on ${today}`), reached);
    assert.ok(reached.includes('3,000 recordings'), `the usage dropped since: ${reached}`);
    const alerts = await page.locator('#alerts').textContent();
    assert.ok(alerts.includes('Session replay: 80') && alerts.includes('Session replay: 100'), alerts);
    const [, view] = await api(tally.url, 'GET', `/v1/customers/${c.id}/usage`, undefined, c.key);
    assert.equal(await page.locator('#so-far').getAttribute('data-amount'), view.bill.total, 'the bill is the usage view\'s');
    assert.equal(await page.locator('#projected').getAttribute('data-amount'), view.projected.bill.total);
    assert.match(await page.locator('#history').textContent(), /this page/);
    assert.deepEqual(page.errors, []);
    await page.screenshot({ path: join(ARTIFACTS, `billing-page-${db.name}.png`), fullPage: true });
    await page.context().close();
  });

  test(`${db.name}: the prediction the browser computes is the server's, for random paces and caps`, async () => {
    const { tally } = servers.find((s) => s.name === db.name);
    const seed = Number(process.env.TALLY_BROWSER_SEED ?? 20261205);
    const random = rng(seed);
    for (let round = 0; round < 4; round++) {
      const c = await customer(tally.url, `pace${round}`);
      const recordings = 1000 + Math.floor(random() * 400_000);
      const cap = Math.floor(random() * 3000);
      const context = `seed ${seed} round ${round}: ${recordings} recordings, cap $${cap}`;
      await usage(tally.url, c.id, 'recordings', recordings);
      const [status] = await api(tally.url, 'PUT', `/v1/customers/${c.id}/limits`, { session_replay: String(cap) }, c.key);
      assert.equal(status, 200);
      const page = await openBilling(tally.url, c);
      const read = () => page.evaluate(() => {
        const e = document.querySelector('#cap-effect-session_replay');
        return { text: e.textContent, effect: e.dataset.effect, at: e.dataset.reachesAt, dropped: e.dataset.dropped };
      });
      // Rendered by the server (native billing-core)…
      const server = await read();
      // …and recomputed by the browser (billing-core in wasm) for the same cap and the same data: equal.
      await page.locator('#cap-session_replay').fill('');
      await page.waitForFunction(() => document.querySelector('#cap-effect-session_replay').dataset.effect === 'removed');
      await page.locator('#cap-session_replay').fill(String(cap));
      await page.waitForFunction(() => document.querySelector('#cap-effect-session_replay').dataset.effect !== 'removed');
      assert.deepEqual(await read(), server, context);
      // And the API, asked a moment later, sees the cap bind on the same day.
      const [, view] = await api(tally.url, 'GET', `/v1/customers/${c.id}/usage`, undefined, c.key);
      const capView = view.caps.find((x) => x.product === 'session_replay');
      if (server.effect === 'reaches' && capView.projected_cap_at) {
        const predicted = Date.parse(server.at);
        const api_at = Date.parse(capView.projected_cap_at);
        assert.ok(Math.abs(predicted - api_at) < 60_000 || new Date(predicted).toISOString().slice(0, 10) === new Date(api_at).toISOString().slice(0, 10), `${context}: ${server.at} vs ${capView.projected_cap_at}`);
      } else if (server.effect === 'not-reached') {
        assert.equal(capView.projected_cap_at, null, context);
      }
      assert.deepEqual(page.errors, [], context);
      await page.context().close();
    }
  });
}

test('a cross-site form post cannot change a cap, even with the session open in the browser', async () => {
  const { tally } = servers[0];
  const c = await customer(tally.url, 'csrf');
  const page = await openBilling(tally.url, c);
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  // Another site (localhost is not 127.0.0.1) posts the form, even knowing the token.
  const port = new URL(tally.url).port;
  const evil = await page.context().newPage();
  await evil.goto(`http://localhost:${port}/healthz`);
  const response = await Promise.all([
    evil.waitForResponse((r) => r.url().endsWith('/billing/limits')),
    evil.evaluate(({ target, csrf }) => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = target;
      for (const [name, value] of [['csrf', csrf], ['product', 'session_replay'], ['limit', '1']]) {
        const input = document.createElement('input');
        input.name = name; input.value = value; form.appendChild(input);
      }
      document.body.appendChild(form);
      form.submit();
    }, { target: `${tally.url}/billing/limits`, csrf }),
  ]).then(([r]) => r);
  assert.ok([401, 403].includes(response.status()), `refused: ${response.status()}`);
  const [, limits] = await api(tally.url, 'GET', `/v1/customers/${c.id}/limits`, undefined, c.key);
  assert.deepEqual(limits, {}, 'nothing written');
  await page.context().close();
});

test('at a phone\'s width in dark mode the page has no overflow, hydrates, and logs no error', async () => {
  const { tally } = servers[0];
  const c = await customer(tally.url, 'phone');
  await usage(tally.url, c.id, 'events', 2_500_000);
  await usage(tally.url, c.id, 'recordings', 12_000);
  const page = await openBilling(tally.url, c, { viewport: { width: 360, height: 740 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px`);
  const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(dark, 'rgb(16, 19, 27)', 'dark colours');
  // Every input has a label; the charts have a text alternative.
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input:not([type=hidden]), select')]
    .filter((i) => !i.labels?.length && !i.getAttribute('aria-label')).map((i) => i.id || i.name));
  assert.deepEqual(unlabelled, []);
  const charts = await page.locator('figure.chart svg[role=img][aria-label]').count();
  assert.ok(charts >= 2, `charts with a text alternative: ${charts}`);
  assert.deepEqual(page.errors, []);
  await page.screenshot({ path: join(ARTIFACTS, 'billing-page-phone-dark.png'), fullPage: true });
  await page.context().close();
});

test('without JavaScript the cap form works as a plain post', async () => {
  const { tally } = servers[0];
  const c = await customer(tally.url, 'nojs');
  const page = await openBilling(tally.url, c, { javaScriptEnabled: false });
  await page.locator('#cap-product_analytics').fill('120');
  await Promise.all([
    page.waitForURL((u) => u.search.includes('saved=product_analytics')),
    page.locator('#product-product_analytics .cap-form button[type=submit]').click(),
  ]);
  assert.match(await page.locator('.notice').textContent(), /Saved the cap on Product analytics/);
  await Promise.all([
    page.waitForURL((u) => u.search.includes('saved=product_analytics')),
    page.locator('#product-product_analytics form.remove button').click(),
  ]);
  const [, limits] = await api(tally.url, 'GET', `/v1/customers/${c.id}/limits`, undefined, c.key);
  assert.deepEqual(limits, {}, 'removed in one action');
  const [, history] = await api(tally.url, 'GET', `/v1/customers/${c.id}/limits/history`, undefined, c.key);
  assert.deepEqual(history.data.map((h) => [h.product, h.old, h.new, h.by]),
    [['product_analytics', '120', null, 'portal'], ['product_analytics', null, '120', 'portal']]);
  await page.context().close();
});

test('an invoice from the page reads as an invoice and prints on one A4 page', async () => {
  const { tally } = servers[0];
  // A customer since last month, with last month's usage, invoiced by a run.
  const now = new Date();
  const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  const id = `print-${Date.now().toString(36)}`;
  const [status, created] = await api(tally.url, 'POST', '/v1/customers', { id, name: 'Globex <Corp> & Co', billing_anchor: last.toISOString() }, ADMIN);
  assert.equal(status, 201, JSON.stringify(created));
  const c = { id, key: created.api_key };
  const at = new Date(last.getTime() + 3 * 86_400_000);
  await usage(tally.url, id, 'events', 3_000_000, at);
  await usage(tally.url, id, 'recordings', 25_000, at);
  await usage(tally.url, id, 'feature_flag_requests', 1, at);
  const [runStatus, run] = await api(tally.url, 'POST', '/v1/invoice-runs', { as_of: monthStart().toISOString(), issue: true }, ADMIN);
  assert.equal(runStatus, 202, JSON.stringify(run));
  for (let i = 0; i < 100; i++) {
    const [, r] = await api(tally.url, 'GET', `/v1/invoice-runs/${run.id}`, undefined, ADMIN);
    if (r.status === 'completed') break;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const page = await openBilling(tally.url, c);
  const row = page.locator('#invoices tbody tr').first();
  assert.match(await row.textContent(), /INV-\d{6}/);
  const [invoice] = await Promise.all([page.context().waitForEvent('page'), row.locator('a', { hasText: 'View' }).click({ modifiers: ['Shift'] })]);
  await invoice.waitForLoadState();
  const text = await invoice.locator('body').innerText();
  for (const want of ['Bill to', 'Globex <Corp> & Co', 'From', 'Issued', 'Due', '3,000,000 events', '25,000 recordings', '1 request', '$']) {
    assert.ok(text.toLowerCase().includes(want.toLowerCase()), `the invoice says "${want}":\n${text}`);
  }
  assert.ok(!/\d{4}-\d{2}-\d{2}T/.test(text), 'no raw instants');
  assert.ok(!/(?<![.,\d])\d{5,}/.test(text.replace(/INV-\d+/g, '')), 'quantities have separators');
  const pdf = await invoice.pdf({ format: 'A4' });
  const pages = (pdf.toString('latin1').match(/\/Type\s*\/Page[^s]/g) ?? []).length;
  assert.equal(pages, 1, 'a typical bill prints on one A4 page');
  const letter = await invoice.pdf({ format: 'Letter' });
  assert.equal((letter.toString('latin1').match(/\/Type\s*\/Page[^s]/g) ?? []).length, 1, 'and on one Letter page');
  await page.context().close();
});
