// End-to-end test of the admin page (`/admin`) in headless Chromium, driven by playwright-core.
//
// It starts the server itself (so it can kill it for real and drop the page's WebSocket),
// with a known admin key and a fake Stripe API for refunds, builds its own fixtures through
// the public API, and walks through the page as an admin would: wrong key, right key, an
// inline edit, a version conflict caused by another writer, a backorder arriving live, a
// server killed with SIGKILL and restarted on the same port, with the feed resuming from its
// last cursor without gap or duplicate. Screenshots go to ARTIFACTS_DIR (`admin-*.png`).
//
//   STOCKROOM_BIN   the server binary (default: target/debug/stockroom)
//   DATABASE_URL    the database (default: a new SQLite file in a temporary directory)
//   ARTIFACTS_DIR   where screenshots and server logs go (default: target/admin-e2e)
//   CHROMIUM        the browser (default: /usr/bin/chromium)
//
// Run: npm ci --prefix tests/admin-e2e && node tests/admin-e2e/admin.mjs
// Prints one line per passed step; exits 0 when every step passed, 1 otherwise.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(process.env.STOCKROOM_BIN || path.join(REPO, 'target', 'debug', 'stockroom'));
const ARTIFACTS = path.resolve(process.env.ARTIFACTS_DIR || path.join(REPO, 'target', 'admin-e2e'));
/** A directory of our own for the database, when none was given; removed at the end. */
const OWN_DIR = process.env.DATABASE_URL ? null : mkdtempSync(path.join(os.tmpdir(), 'stockroom-admin-e2e-'));
const DATABASE_URL = process.env.DATABASE_URL || `sqlite://${path.join(OWN_DIR, 'e2e.sqlite')}?mode=rwc`;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN_KEY = `srk_${randomBytes(32).toString('hex')}`;
const WRONG_KEY = `srk_${'0'.repeat(64)}`;
const WEBHOOK_SECRET = `whsec_e2e_${randomBytes(8).toString('hex')}`;
const RUN = Date.now().toString(36);
/** Longest wait for anything the page or the server should do by itself. */
const WAIT_MS = 20_000;
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

mkdirSync(ARTIFACTS, { recursive: true });
rmSync(path.join(ARTIFACTS, 'admin-failure.png'), { force: true });

// ---------------------------------------------------------------------------------------
// Steps, failures and clean-up

let page = null;
let browser = null;
let server = null;
let stripe = null;
let serverRun = 0;
const pageErrors = [];
const externalRequests = [];
const cspViolations = new Map();

class StepFailure extends Error {}

function check(condition, message) {
  if (!condition) throw new StepFailure(message);
}

async function step(name, body) {
  try {
    await body();
    console.log(`ok - ${name}`);
  } catch (err) {
    console.error(`FAIL - ${name}: ${err && err.message ? err.message : err}`);
    if (page) {
      const shown = await page.locator('.message[data-kind="error"], [data-testid="conflict"]:visible')
        .allTextContents().catch(() => []);
      if (shown.length) console.error(`  the page shows:\n    ${shown.map((t) => t.trim()).join('\n    ')}`);
      const file = path.join(ARTIFACTS, 'admin-failure.png');
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`  screenshot: ${file}`);
    }
    if (!(err instanceof StepFailure) && err && err.stack) console.error(err.stack);
    if (pageErrors.length) console.error(`  page errors:\n    ${pageErrors.join('\n    ')}`);
    await cleanUp();
    console.error(`  server logs: ${ARTIFACTS}/server-*.log`);
    process.exit(1);
  }
}

async function cleanUp() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  await stopServer();
  if (stripe) stripe.close();
  stripe = null;
  if (OWN_DIR) rmSync(OWN_DIR, { recursive: true, force: true });
}

process.on('SIGINT', async () => {
  await cleanUp();
  process.exit(130);
});

/** Polls `probe` until it returns something truthy; fails with `what` after `timeout`. */
async function until(what, probe, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new StepFailure(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function screenshot(name, options = {}) {
  await page.screenshot({ path: path.join(ARTIFACTS, name), ...options });
}

// ---------------------------------------------------------------------------------------
// The server and a fake Stripe

async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Answers `POST /v1/refunds` like Stripe does, so rejected orders get a refund id. */
function startFakeStripe() {
  return new Promise((resolve) => {
    const fake = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        if (request.method !== 'POST' || !request.url.startsWith('/v1/refunds')) {
          response.writeHead(404).end();
          return;
        }
        const refund = {
          id: `re_e2e${RUN}`, object: 'refund', amount: 4990, balance_transaction: null,
          charge: 'ch_e2e', created: Math.floor(Date.now() / 1000), currency: 'eur',
          destination_details: null, metadata: {}, payment_intent: 'pi_e2e', reason: null,
          receipt_number: null, source_transfer_reversal: null, status: 'succeeded', transfer_reversal: null,
        };
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(refund));
      });
    });
    fake.listen(0, '127.0.0.1', () => resolve(fake));
  });
}

let port = 0;
let base = '';

async function startServer() {
  serverRun += 1;
  const log = createWriteStream(path.join(ARTIFACTS, `server-${serverRun}.log`));
  const child = spawn(BIN, [], {
    // The repository root: a debug build reads its embedded assets from there.
    cwd: REPO,
    env: {
      ...process.env,
      DATABASE_URL,
      STOCKROOM_ADDR: `127.0.0.1:${port}`,
      STOCKROOM_ADMIN_KEY: ADMIN_KEY,
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      STRIPE_SECRET_KEY: 'sk_test_admin_e2e',
      STRIPE_API_BASE: `http://127.0.0.1:${stripe.address().port}/`,
    },
    // Its own process group, so a kill reaches whatever it started too.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.once('error', (err) => log.write(`spawn failed: ${err.message}\n`));
  server = child;
  await until('the server to answer GET /ready', async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new StepFailure(`the server exited at start (see server-${serverRun}.log)`);
    }
    const response = await fetch(`${base}/ready`).catch(() => null);
    return response && response.status === 200;
  }, 90_000);
}

async function stopServer(signal = 'SIGTERM') {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
  await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
}

// ---------------------------------------------------------------------------------------
// The API, as another client

async function api(query, variables = {}, { key = ADMIN_KEY } = {}) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors && body.errors.length) {
    const error = new StepFailure(`API error: ${body.errors.map((e) => `${e.message} (${e.extensions && e.extensions.code})`).join('; ')}`);
    error.body = body;
    throw error;
  }
  return body.data;
}

const LEVEL = 'id stockedQuantity reservedQuantity available allowBackorder version location { id }';

async function level(sku, locationId) {
  const data = await api(`query ($sku: String!) { inventoryItem(sku: $sku) { levels { ${LEVEL} } } }`, { sku });
  return data.inventoryItem.levels.find((l) => l.location.id === locationId);
}

async function allEventIds() {
  const ids = [];
  let after = null;
  for (;;) {
    const data = await api('query ($after: ID) { backorderEvents(after: $after, first: 100) { id orderId } }', { after });
    ids.push(...data.backorderEvents);
    if (data.backorderEvents.length < 100) return ids;
    after = data.backorderEvents[data.backorderEvents.length - 1].id;
  }
}

async function placeBackorder(n) {
  const data = await api(`mutation ($input: PlaceOrderInput!) {
    placeOrder(input: $input) { id status lines { sku backorderedQuantity } } }`, {
    input: {
      paymentIntentId: `pi_e2e${RUN}n${n}`,
      salesChannelId: fixture.channel,
      lines: [{ sku: fixture.backorderSku, quantity: 2 }],
    },
  });
  const order = data.placeOrder;
  check(order.status === 'PLACED' && order.lines[0].backorderedQuantity > 0,
    `order ${n} should be placed with a backorder, got ${JSON.stringify(order)}`);
  const events = await until(`the backorder event of order ${order.id} in the API`, async () => {
    const all = await allEventIds();
    return all.find((event) => event.orderId === order.id);
  });
  return { order, eventId: events.id };
}

function stripeSignature(payload) {
  const timestamp = Math.floor(Date.now() / 1000);
  const mac = createHmac('sha256', WEBHOOK_SECRET).update(`${timestamp}.${payload}`).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

// ---------------------------------------------------------------------------------------
// The page

const row = (sku, locationId) => page.locator(`[data-testid="level-${sku}-${locationId}"]`);
const cell = (sku, locationId, field) => row(sku, locationId).locator(`[data-field="${field}"]`);
const editorOf = (sku, locationId) => page.locator(`tr.editor#editor-${fixture.levelIds[`${sku}@${locationId}`]}`);

async function text(locator) {
  return (await locator.textContent({ timeout: WAIT_MS })).trim();
}

async function expectText(what, locator, expected) {
  await until(`${what} to read ${JSON.stringify(String(expected))}`, async () => {
    const actual = await locator.textContent({ timeout: 1000 });
    return actual !== null && actual.trim() === String(expected);
  });
}

async function feedIds() {
  // Newest first on screen; oldest first here.
  return (await page.locator('#feed-list [data-event-id]').evaluateAll(
    (nodes) => nodes.map((node) => node.dataset.eventId))).reverse();
}

async function feedState() {
  return page.locator('#feed-section').evaluate((node) => ({ ...node.dataset }));
}

async function signIn(key) {
  await page.locator('#key-input').fill(key);
  await page.locator('#key-submit').click();
}

function watch(target) {
  target.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
  target.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) {
      // One line per kind of violation: data URIs shortened, repeats counted.
      const line = `CSP: ${message.text().replace(/'data:[^']{40,}'/g, (uri) => `'${uri.slice(1, 30)}…'`)}`;
      cspViolations.set(line, (cspViolations.get(line) || 0) + 1);
    }
  });
}

async function newPage(viewport, options = {}) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC', ...options });
  // Nothing may come from anywhere but this server.
  await context.route((url) => !url.href.startsWith(base) && url.protocol !== 'data:', (route) => {
    externalRequests.push(route.request().url());
    return route.abort();
  });
  const created = await context.newPage();
  watch(created);
  return created;
}

// ---------------------------------------------------------------------------------------
// Fixtures: a location, a channel selling from it, an item to edit, one to backorder

const fixture = {};

async function buildFixtures() {
  // Readable names for the screenshots; a suffix only when the database has them already.
  const taken = await api('query { inventoryItem(sku: "HOODIE-GRY-L") { id } }');
  const suffix = taken.inventoryItem ? `-${RUN.toUpperCase()}` : '';
  fixture.editSku = `HOODIE-GRY-L${suffix}`;
  fixture.backorderSku = `TOTE-CANVAS${suffix}`;
  const location = await api('mutation ($name: String!) { createStockLocation(input: { name: $name }) { id } }',
    { name: 'Leipzig Depot' });
  fixture.location = location.createStockLocation.id;
  const channel = await api('mutation ($name: String!) { createSalesChannel(input: { name: $name }) { id } }',
    { name: 'Marketplace' });
  fixture.channel = channel.createSalesChannel.id;
  await api(`mutation ($input: MapSalesChannelLocationInput!) { mapSalesChannelLocation(input: $input) { id } }`,
    { input: { salesChannelId: fixture.channel, stockLocationId: fixture.location, priority: 0 } });
  fixture.levelIds = {};
  for (const [sku, title, stocked, allowBackorder] of [
    [fixture.editSku, 'Hoodie, grey, L', 12, false],
    [fixture.backorderSku, 'Canvas tote (made to order)', 1, true],
  ]) {
    await api('mutation ($input: CreateInventoryItemInput!) { createInventoryItem(input: $input) { id } }',
      { input: { sku, title } });
    const created = await api(`mutation ($input: SetStockLevelInput!) { setStockLevel(input: $input) { id } }`, {
      input: { sku, stockLocationId: fixture.location, stockedQuantity: stocked, allowBackorder, expectedVersion: 0 },
    });
    fixture.levelIds[`${sku}@${fixture.location}`] = created.setStockLevel.id;
  }
}

// ---------------------------------------------------------------------------------------
// The scenario

async function main() {
  await step('start the server with a known admin key', async () => {
    check(process.versions.node.split('.')[0] >= 20, 'Node.js 20 or later is needed');
    stripe = await startFakeStripe();
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    await startServer();
    await buildFixtures();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
    });
    page = await newPage(LAPTOP);
  });

  await step('GET /admin shows the key form', async () => {
    const response = await page.goto(`${base}/admin`);
    check(response.status() === 200, `GET /admin answered ${response.status()}`);
    await page.locator('#key-input').waitFor({ state: 'visible', timeout: WAIT_MS });
    check(await page.locator('#dashboard').isHidden(), 'the dashboard shows before a key was given');
  });

  await step('a wrong key shows a clear message and nothing else', async () => {
    await signIn(WRONG_KEY);
    await until('the wrong-key message', async () => /UNAUTHENTICATED/.test(await text(page.locator('#key-message'))));
    const message = await text(page.locator('#key-message'));
    check(/not accepted/i.test(message), `unclear message: ${message}`);
    check(await page.locator('#dashboard').isHidden(), 'the dashboard shows with a wrong key');
    check(await page.evaluate(() => sessionStorage.getItem('stockroom.adminKey')) === null, 'a wrong key was stored');
    check(!page.url().includes(WRONG_KEY), 'the key is in the URL');
    await screenshot('admin-wrong-key.png');
  });

  await step('the right key shows the tables; the key stays out of the URL', async () => {
    await signIn(ADMIN_KEY);
    await page.locator('#dashboard').waitFor({ state: 'visible', timeout: WAIT_MS });
    await page.locator('#items-table tr.level').first().waitFor({ timeout: WAIT_MS });
    await page.locator('#locations-table tbody tr').first().waitFor({ timeout: WAIT_MS });
    await page.locator(`#channels [data-channel-id="${fixture.channel}"]`).waitFor({ timeout: WAIT_MS });
    check(!page.url().includes(ADMIN_KEY), 'the key is in the URL');
    check(await page.evaluate(() => sessionStorage.getItem('stockroom.adminKey')) === ADMIN_KEY,
      'the key is not kept in sessionStorage');
    check(await page.evaluate(() => localStorage.length) === 0, 'something was written to localStorage');
    check(/^\s*$/.test(await page.locator('#key-input').inputValue()), 'the key is left in the form');
  });

  await step('searching finds an item', async () => {
    await page.locator('#item-search-input').fill(fixture.editSku);
    await page.locator('#item-search-input').press('Enter');
    await row(fixture.editSku, fixture.location).waitFor({ timeout: WAIT_MS });
    await until('the search to leave only the matching item', async () =>
      (await page.locator('#items-table tbody.item-group').count()) === 1);
  });

  let version = 0;
  await step('an inline setStockLevel shows the new value and version', async () => {
    const before = await level(fixture.editSku, fixture.location);
    version = before.version;
    await expectText('the version shown', cell(fixture.editSku, fixture.location, 'version'), version);
    await row(fixture.editSku, fixture.location).getByTestId('edit-button').click();
    const editor = editorOf(fixture.editSku, fixture.location);
    await editor.getByTestId('set-input').fill('30');
    await editor.getByTestId('set-submit').click();
    await expectText('the stocked quantity', cell(fixture.editSku, fixture.location, 'stocked'), 30);
    await expectText('the version', cell(fixture.editSku, fixture.location, 'version'), version + 1);
    await until('the saved message', async () => /Saved/.test(await text(editor.getByTestId('edit-message'))));
    const after = await level(fixture.editSku, fixture.location);
    check(after.stockedQuantity === 30 && after.version === version + 1,
      `the API has stocked ${after.stockedQuantity}, version ${after.version}`);
    version += 1;
    await screenshot('admin-edited.png');
  });

  await step('an edit on a stale version shows the conflict and the current value, and overwrites nothing', async () => {
    // Another writer gets there first.
    const other = await api(`mutation ($input: SetStockLevelInput!) { setStockLevel(input: $input) { ${LEVEL} } }`, {
      input: { sku: fixture.editSku, stockLocationId: fixture.location, stockedQuantity: 18, expectedVersion: version },
    });
    const current = other.setStockLevel;
    check(current.version === version + 1, `the other writer got version ${current.version}`);
    // The page still shows what it loaded.
    check(await text(cell(fixture.editSku, fixture.location, 'version')) === String(version),
      'the page refreshed the level by itself; the stale edit cannot be tested');
    const editor = editorOf(fixture.editSku, fixture.location);
    await editor.getByTestId('set-input').fill('25');
    await editor.getByTestId('set-submit').click();
    const conflict = editor.getByTestId('conflict');
    await conflict.waitFor({ state: 'visible', timeout: WAIT_MS });
    await expectText('the current value in the conflict', conflict.getByTestId('conflict-current'), 18);
    await expectText('the current version in the conflict', conflict.getByTestId('conflict-version'), current.version);
    check(await conflict.getAttribute('role') === 'alert', 'the conflict is not announced (role=alert)');
    await expectText('the row after the conflict', cell(fixture.editSku, fixture.location, 'stocked'), 18);
    await expectText('the row version after the conflict', cell(fixture.editSku, fixture.location, 'version'), current.version);
    const after = await level(fixture.editSku, fixture.location);
    check(after.stockedQuantity === 18 && after.version === current.version,
      `the conflicting edit changed the level: stocked ${after.stockedQuantity}, version ${after.version}`);
    version = current.version;
    await screenshot('admin-conflict.png');
  });

  await step('an inline adjustStock after the conflict applies on the current version', async () => {
    const editor = editorOf(fixture.editSku, fixture.location);
    await editor.getByTestId('adjust-input').fill('-3');
    await editor.getByTestId('adjust-reason').fill('damaged in transit');
    await editor.getByTestId('adjust-submit').click();
    await expectText('the stocked quantity', cell(fixture.editSku, fixture.location, 'stocked'), 15);
    await expectText('the version', cell(fixture.editSku, fixture.location, 'version'), version + 1);
    await editor.getByTestId('conflict').waitFor({ state: 'hidden', timeout: WAIT_MS });
    const after = await level(fixture.editSku, fixture.location);
    check(after.stockedQuantity === 15 && after.version === version + 1,
      `the API has stocked ${after.stockedQuantity}, version ${after.version}`);
    version += 1;
  });

  await step('the ledger of the level lists the movements, newest first', async () => {
    await row(fixture.editSku, fixture.location).getByTestId('ledger-button').click();
    const rows = page.locator('#ledger-table tbody tr');
    await until('four ledger rows', async () => (await rows.count()) === 4);
    const first = await text(rows.first());
    check(/ADJUSTMENT/.test(first) && /damaged in transit/.test(first) && /-3/.test(first),
      `the newest movement reads: ${first}`);
    await page.locator('#ledger-close').click();
    await row(fixture.editSku, fixture.location).getByTestId('edit-button').click(); // close the editor
  });

  let firstEvent;
  await step('a backordering order placed through the API appears live in the feed', async () => {
    await until('the feed to be live', async () => (await feedState()).state === 'live');
    firstEvent = await placeBackorder(1);
    const item = page.locator(`#feed-list [data-event-id="${firstEvent.eventId}"]`);
    await item.waitFor({ timeout: WAIT_MS });
    const line = await text(item);
    check(line.includes(fixture.backorderSku), `the feed line does not name the sku: ${line}`);
    await screenshot('admin-feed-live.png');
  });

  let resumed = [];
  await step('after a SIGKILL and a restart on the same port, the feed resumes by itself without gap or duplicate', async () => {
    const before = await feedState();
    await stopServer('SIGKILL');
    await until('the page to notice the dropped socket', async () => (await feedState()).state !== 'live');
    await startServer();
    // Placed at once: most likely while the page is still waiting to reconnect, so this
    // one arrives through the replay from the page's cursor.
    const whileAway = await placeBackorder(2);
    const stateAtOrder = (await feedState()).state;
    await until('the page to reconnect', async () => {
      const state = await feedState();
      return state.state === 'live' && Number(state.connects) > Number(before.connects);
    }, 45_000);
    const afterReconnect = await placeBackorder(3);
    resumed = [whileAway.eventId, afterReconnect.eventId];
    for (const id of resumed) {
      await page.locator(`#feed-list [data-event-id="${id}"]`).waitFor({ timeout: WAIT_MS });
    }
    const shown = await feedIds();
    const stored = (await allEventIds()).map((event) => event.id);
    const expected = stored.slice(stored.indexOf(shown[0]));
    check(JSON.stringify(shown) === JSON.stringify(expected),
      `the feed shows ${JSON.stringify(shown)}, the API has ${JSON.stringify(expected)} (gap or duplicate)`);
    for (const id of resumed) {
      check(shown.filter((shownId) => shownId === id).length === 1, `event ${id} is not shown exactly once`);
    }
    const state = await feedState();
    check(state.duplicatesDropped === '0', `the server sent ${state.duplicatesDropped} events again`);
    console.log(`     (order 2 was placed while the feed was ${stateAtOrder}; events ${resumed.join(', ')} after ${firstEvent.eventId})`);
    await screenshot('admin-feed-resumed.png');
  });

  let rejectedOrder;
  await step('a rejected order (Stripe webhook, out of stock) is highlighted with its reason and refund', async () => {
    const paymentIntent = `pi_e2e${RUN}rejected`;
    const payload = JSON.stringify({
      id: `evt_e2e${RUN}`, object: 'event', type: 'payment_intent.succeeded', created: Math.floor(Date.now() / 1000),
      data: {
        object: {
          id: paymentIntent, object: 'payment_intent', amount: 4990, currency: 'eur', status: 'succeeded',
          metadata: {
            sales_channel_id: fixture.channel,
            lines: JSON.stringify([{ sku: fixture.editSku, quantity: 500 }]),
          },
        },
      },
    });
    const response = await fetch(`${base}/webhooks/stripe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': stripeSignature(payload) },
      body: payload,
    });
    check(response.status === 200, `the webhook answered ${response.status}: ${await response.text()}`);
    const data = await api('query ($pi: String!) { orderByPaymentIntent(paymentIntentId: $pi) { id status refundId } }',
      { pi: paymentIntent });
    rejectedOrder = data.orderByPaymentIntent;
    check(rejectedOrder && rejectedOrder.status === 'REJECTED', `the order is ${JSON.stringify(rejectedOrder)}`);
    await page.locator('#orders-refresh').click();
    const orderRow = page.locator(`#orders-table tr[data-order-id="${rejectedOrder.id}"]`);
    await orderRow.waitFor({ timeout: WAIT_MS });
    check(await orderRow.evaluate((node) => node.classList.contains('rejected')), 'the rejected order is not highlighted');
    const reason = await text(orderRow.getByTestId('rejection-reason'));
    check(reason.length > 0 && !/No reason/.test(reason), `no rejection reason shown: ${reason}`);
    const refund = await text(orderRow.getByTestId('refund-state'));
    check(/Refunded/.test(refund) && refund.includes(rejectedOrder.refundId || 're_'), `refund state reads: ${refund}`);
    const placed = page.locator(`#orders-table tr[data-order-id="${firstEvent.order.id}"]`);
    await placed.waitFor({ timeout: WAIT_MS });
  });

  await step('an active reservation is listed with its expiry', async () => {
    const key = `cart-${RUN}`;
    await api(`mutation ($input: ReserveStockInput!) { reserveStock(input: $input) { id } }`, {
      input: { key, salesChannelId: fixture.channel, lines: [{ sku: fixture.editSku, quantity: 2 }], ttlSeconds: 900 },
    });
    await page.locator('#reservations-refresh').click();
    const reservation = page.locator('#reservations-table tbody tr', { hasText: key });
    await reservation.waitFor({ timeout: WAIT_MS });
    check(/in 1[45] minutes/.test(await text(reservation)), `expiry reads: ${await text(reservation)}`);
  });

  await step('a channel mapping priority is editable', async () => {
    const input = page.getByTestId(`priority-${fixture.channel}-${fixture.location}`);
    await input.fill('3');
    await input.press('Enter');
    const block = page.locator(`#channels [data-channel-id="${fixture.channel}"]`);
    await until('the saved message', async () => /Saved/.test(await text(block.locator('.message'))));
    const data = await api('query { salesChannels { id locations { priority location { id } } } }');
    const mapping = data.salesChannels.find((c) => c.id === fixture.channel).locations
      .find((m) => m.location.id === fixture.location);
    check(mapping.priority === 3, `the API has priority ${mapping.priority}`);
    await page.getByTestId(`priority-${fixture.channel}-${fixture.location}`).fill('0');
    await page.getByTestId(`priority-${fixture.channel}-${fixture.location}`).press('Enter');
    await until('the priority to be restored', async () => {
      const again = await api('query { salesChannels { id locations { priority location { id } } } }');
      return again.salesChannels.find((c) => c.id === fixture.channel).locations[0].priority === 0;
    });
  });

  await step('the chart of the last hour is drawn', async () => {
    // One more refusal, through the API this time.
    const refused = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
      body: JSON.stringify({
        query: 'mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }',
        variables: { input: { paymentIntentId: `pi_e2e${RUN}refused`, salesChannelId: fixture.channel, lines: [{ sku: fixture.editSku, quantity: 500 }] } },
      }),
    }).then((response) => response.json());
    check(refused.errors && refused.errors[0].extensions.code === 'OUT_OF_STOCK', `the order was not refused: ${JSON.stringify(refused)}`);
    await page.locator('#activity-refresh').click();
    await page.locator('#activity-chart canvas').waitFor({ timeout: WAIT_MS });
    await until('the chart summary to count the orders', async () => {
      const summary = await text(page.locator('#activity-summary'));
      const match = /(\d+) orders placed, (\d+) out-of-stock refusals, (\d+) backorders/.exec(summary);
      return match && Number(match[1]) >= 3 && Number(match[2]) >= 2 && Number(match[3]) >= 3;
    });
  });

  await step('laptop overview screenshot', async () => {
    await page.locator('#item-search-input').fill('');
    await page.locator('#item-search-input').press('Enter');
    await until('every item to be listed again', async () => (await page.locator('#items-table tbody.item-group').count()) > 1);
    await page.locator('#item-search-input').blur();
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.locator('#activity-chart canvas').waitFor({ timeout: WAIT_MS });
    await screenshot('admin-overview.png', { fullPage: true });
  });

  await step('phone-sized viewport', async () => {
    const phone = await newPage(PHONE, { deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    await phone.goto(`${base}/admin`);
    await phone.locator('#key-input').fill(ADMIN_KEY);
    await phone.locator('#key-submit').click();
    await phone.locator('#items-table tr.level').first().waitFor({ timeout: WAIT_MS });
    await phone.locator('#activity-chart canvas').waitFor({ timeout: WAIT_MS });
    await until('the phone feed to be live', async () =>
      (await phone.locator('#feed-section').getAttribute('data-state')) === 'live');
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `the page is ${overflow}px wider than a phone screen`);
    await phone.evaluate(() => window.scrollTo(0, 0));
    await phone.screenshot({ path: path.join(ARTIFACTS, 'admin-phone.png') });
    await phone.locator('#items-section').scrollIntoViewIfNeeded();
    await phone.screenshot({ path: path.join(ARTIFACTS, 'admin-phone-stock.png') });
    await phone.context().close();
  });

  await step('GraphiQL at GET /graphql loads with no asset from the internet', async () => {
    const graphiql = await newPage(LAPTOP);
    // GraphiQL reads the schema by introspection first: without it, no docs and no completion.
    const introspection = graphiql.waitForResponse((r) => r.url().endsWith('/graphql')
      && r.request().method() === 'POST' && /__schema/.test(r.request().postData() || ''), { timeout: WAIT_MS });
    const response = await graphiql.goto(`${base}/graphql`);
    check(response.status() === 200, `GET /graphql (HTML) answered ${response.status()}`);
    await graphiql.locator('.graphiql-container').waitFor({ timeout: WAIT_MS });
    const schema = await (await introspection).json();
    check(schema.data && schema.data.__schema,
      `GraphiQL's introspection query failed: ${JSON.stringify(schema.errors || schema)}`);
    await graphiql.locator('.graphiql-query-editor .CodeMirror').first().waitFor({ timeout: WAIT_MS });
    await graphiql.screenshot({ path: path.join(ARTIFACTS, 'admin-graphiql.png') });
    await graphiql.context().close();
  });

  await step('no script error, CSP violation or request to another origin', async () => {
    for (const [line, count] of cspViolations) pageErrors.push(count > 1 ? `${line} (${count} times)` : line);
    check(pageErrors.length === 0, `the pages reported:\n    ${pageErrors.join('\n    ')}`);
    check(externalRequests.length === 0, `requests left the server: ${externalRequests.join(', ')}`);
  });

  await cleanUp();
  console.log(`all steps passed; screenshots in ${ARTIFACTS}`);
}

main().catch(async (err) => {
  console.error(`FAIL - ${err && err.stack ? err.stack : err}`);
  await cleanUp();
  process.exit(1);
});
