// Stockroom's built-in admin page.
//
// A reference client of the public GraphQL API and nothing more: every number on the page
// comes from `POST /graphql` or the `graphql-transport-ws` socket at `/graphql/ws`, with
// the API key the user pastes in. The key lives in this tab's sessionStorage and travels
// only in the `Authorization` header (HTTP) or the `connection_init` payload (WebSocket),
// never in a URL.
//
// Each panel loads on its own, so one failing query (say, a field an older server lacks)
// shows its error in that panel and leaves the rest working. Stock edits always send the
// `expectedVersion` the page showed; a conflict is reported with the current value and is
// never retried behind the user's back.

const KEY_STORAGE = 'stockroom.adminKey';
const ITEMS_PAGE = 20;
const ORDERS_PAGE = 20;
const RESERVATIONS_PAGE = 50;
const LEDGER_PAGE = 25;
/** Events kept on screen; the feed also loads this many past events when it starts. */
const FEED_KEEP = 50;
/** How often the orders, reservations and chart panels refresh themselves. */
const REFRESH_MS = 30_000;
/** Reconnect backoff of the live feed: doubles from the first to the last value. */
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;
/** Heartbeat of the live feed: a ping every so often, and how long a pong may take. */
const PING_EVERY_MS = 15_000;
const PONG_WITHIN_MS = 10_000;
/** A connection open this long (or delivering an event) resets the backoff. */
const HEALTHY_AFTER_MS = 10_000;

// ---------------------------------------------------------------------------------------
// Small DOM helpers

const $ = (selector, root = document) => root.querySelector(selector);

/** Creates an element; text goes in as text, never as HTML. */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setMessage(node, text, kind = 'info') {
  node.textContent = text || '';
  node.dataset.kind = text ? kind : '';
}

function announce(text) {
  const announcer = $('#announcer');
  announcer.textContent = '';
  // A fresh node each time, so screen readers announce a repeated message too.
  requestAnimationFrame(() => { announcer.textContent = text; });
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const minuteFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : timeFormat.format(date);
}

function formatDateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateTimeFormat.format(date);
}

function formatRelative(iso) {
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  if (Math.abs(seconds) < 60) return relativeFormat.format(seconds, 'second');
  const minutes = Math.round(seconds / 60);
  if (Math.abs(minutes) < 90) return relativeFormat.format(minutes, 'minute');
  return relativeFormat.format(Math.round(minutes / 60), 'hour');
}

function timeElement(iso, text) {
  return h('time', { datetime: iso, title: formatDateTime(iso) }, text);
}

/** Event ids are cursors, increasing in commit order; compare them as numbers when they are. */
function compareCursors(a, b) {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

// ---------------------------------------------------------------------------------------
// GraphQL over HTTP

/** A GraphQL error (or a failure to get an answer), with the contract's error code. */
class ApiError extends Error {
  constructor(message, code, extensions = {}, errors = []) {
    super(message);
    this.code = code;
    this.extensions = extensions;
    this.errors = errors;
  }
}

const AUTH_CODES = new Set(['UNAUTHENTICATED']);

const session = {
  key: null,
  readOnly: false,
};

async function gql(query, variables = {}, key = session.key) {
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables }),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError('Cannot reach the server; is it running?', 'NETWORK');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: handled below.
  }
  if (body && Array.isArray(body.errors) && body.errors.length > 0) {
    const first = body.errors[0];
    const extensions = first.extensions || {};
    throw new ApiError(first.message || 'request failed', extensions.code || null, extensions, body.errors);
  }
  if (!response.ok || !body || !body.data) {
    const code = response.status === 429 ? 'THROTTLED' : 'INTERNAL';
    throw new ApiError(`The server answered HTTP ${response.status}`, code);
  }
  return body.data;
}

/** A sentence for the user, always naming the API's error code when there is one. */
function describeError(err) {
  if (!(err instanceof ApiError)) return `Unexpected error: ${err && err.message ? err.message : err}`;
  switch (err.code) {
    case 'UNAUTHENTICATED':
      return 'The key was not accepted (UNAUTHENTICATED): it is wrong, incomplete or revoked.';
    case 'FORBIDDEN':
      return "This key's role may not do this (FORBIDDEN).";
    case 'THROTTLED':
      return 'Too many requests without a valid key; wait a few seconds and try again (THROTTLED).';
    case 'NETWORK':
      return err.message;
    case null:
    case undefined:
      return err.message;
    default:
      return `${err.message} (${err.code})`;
  }
}

/** Called by every panel on failure: a key that stopped working ends the session. */
function panelError(node, err, prefix = '') {
  if (err instanceof ApiError && AUTH_CODES.has(err.code) && session.key) {
    signOut('Your key stopped working (UNAUTHENTICATED): it may have been revoked. Paste a valid key.');
    return;
  }
  setMessage(node, `${prefix}${describeError(err)}`, 'error');
}

// ---------------------------------------------------------------------------------------
// Sign-in

async function signIn(rawKey) {
  const message = $('#key-message');
  const key = rawKey.trim().replace(/^bearer\s+/i, '');
  if (!key) {
    setMessage(message, 'Paste an API key first.', 'error');
    $('#key-input').focus();
    return;
  }
  const submit = $('#key-submit');
  submit.disabled = true;
  setMessage(message, 'Checking the key…', 'info');
  try {
    await gql('query AdminCheckKey { stockLocations { id } }', {}, key);
  } catch (err) {
    submit.disabled = false;
    sessionStorage.removeItem(KEY_STORAGE);
    let text = describeError(err);
    if (err.code === 'FORBIDDEN') {
      text = "This key's role may not read stock (FORBIDDEN): use an ADMIN key, or a READ key for a read-only view.";
    }
    setMessage(message, text, 'error');
    $('#key-input').setAttribute('aria-invalid', 'true');
    $('#key-input').focus();
    return;
  }
  // Only ADMIN keys may list keys: that tells an ADMIN key from a READ one.
  let role = 'ADMIN';
  try {
    await gql('query AdminCheckRole { apiKeys { id } }', {}, key);
  } catch (err) {
    if (err.code === 'FORBIDDEN') role = 'READ';
  }
  submit.disabled = false;
  session.key = key;
  session.readOnly = role !== 'ADMIN';
  sessionStorage.setItem(KEY_STORAGE, key);
  $('#key-input').value = '';
  $('#key-input').removeAttribute('aria-invalid');
  setMessage(message, '');
  showDashboard(role);
}

function showDashboard(role) {
  $('#key-section').hidden = true;
  $('#dashboard').hidden = false;
  $('#nav').hidden = false;
  $('#session').hidden = false;
  document.body.classList.toggle('read-only', session.readOnly);
  $('#role-badge').textContent = session.readOnly ? `${role} key · read-only` : `${role} key`;
  loadActivity();
  startFeed();
  loadItems();
  loadOrders();
  loadReservations();
  loadCatalog();
  startRefresh();
  // The key form that had the focus is gone: start from the top of the dashboard.
  $('#main').focus({ preventScroll: true });
  announce(`Signed in with an ${role} key.`);
}

function signOut(reason = '') {
  session.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  stopFeed();
  stopRefresh();
  chart.destroy();
  $('#activity-summary').textContent = '';
  $('#dashboard').hidden = true;
  $('#nav').hidden = true;
  $('#session').hidden = true;
  $('#key-section').hidden = false;
  for (const body of [...$('#items-table').tBodies]) body.remove();
  for (const id of ['#orders-table', '#reservations-table', '#ledger-table', '#locations-table']) {
    $(`${id} tbody`).replaceChildren();
  }
  $('#channels').replaceChildren();
  $('#feed-list').replaceChildren();
  $('#ledger-section').hidden = true;
  setMessage($('#key-message'), reason, reason ? 'error' : 'info');
  $('#key-input').focus();
}

// ---------------------------------------------------------------------------------------
// Stock: items, levels, inline edits

const LEVEL_FIELDS = 'id stockedQuantity reservedQuantity available allowBackorder version location { id name }';
const ITEM_FIELDS = `id sku title levels { ${LEVEL_FIELDS} }`;

const ITEMS_QUERY = `query AdminItems($first: Int!, $after: String) {
  inventoryItems(first: $first, after: $after) {
    nodes { ${ITEM_FIELDS} }
    pageInfo { hasNextPage endCursor }
  }
}`;

// `search` filters by sku or title (case-insensitive substring).
const ITEMS_SEARCH_QUERY = `query AdminSearchItems($first: Int!, $after: String, $search: String!) {
  inventoryItems(first: $first, after: $after, search: $search) {
    nodes { ${ITEM_FIELDS} }
    pageInfo { hasNextPage endCursor }
  }
}`;

const ITEM_QUERY = `query AdminItem($sku: String!) { inventoryItem(sku: $sku) { ${ITEM_FIELDS} } }`;

const SET_STOCK = `mutation AdminSetStockLevel($input: SetStockLevelInput!) {
  setStockLevel(input: $input) { ${LEVEL_FIELDS} }
}`;

const ADJUST_STOCK = `mutation AdminAdjustStock($input: AdjustStockInput!) {
  adjustStock(input: $input) { ${LEVEL_FIELDS} }
}`;

const items = {
  search: '',
  /** Cursor of each page seen so far (`null` for the first), for "Previous". */
  cursors: [null],
  page: 0,
  loading: 0,
};

async function loadItems() {
  const message = $('#items-message');
  const ticket = ++items.loading;
  const after = items.cursors[items.page];
  const variables = { first: ITEMS_PAGE, after };
  let query = ITEMS_QUERY;
  if (items.search) {
    query = ITEMS_SEARCH_QUERY;
    variables.search = items.search;
  }
  $('#items-table').setAttribute('aria-busy', 'true');
  try {
    const data = await gql(query, variables);
    if (ticket !== items.loading) return;
    const connection = data.inventoryItems;
    renderItems(connection.nodes);
    const hasNext = connection.pageInfo.hasNextPage;
    items.cursors.length = items.page + 1;
    if (hasNext) items.cursors.push(connection.pageInfo.endCursor);
    $('#items-prev').disabled = items.page === 0;
    $('#items-next').disabled = !hasNext;
    $('#items-page').textContent = `Page ${items.page + 1}`;
    if (connection.nodes.length === 0) {
      setMessage(message, items.search ? `No item matches “${items.search}”.` : 'No items yet.', 'info');
    } else {
      setMessage(message, '');
    }
  } catch (err) {
    if (ticket !== items.loading) return;
    // The rows shown no longer answer what was asked (another page or search).
    for (const body of [...$('#items-table').tBodies]) body.remove();
    panelError(message, err, 'Could not load items: ');
  } finally {
    if (ticket === items.loading) $('#items-table').removeAttribute('aria-busy');
  }
}

function renderItems(nodes) {
  const table = $('#items-table');
  for (const body of [...table.tBodies]) body.remove();
  for (const item of nodes) {
    const body = h('tbody', { class: 'item-group', dataset: { sku: item.sku, testid: `item-${item.sku}` } });
    body.append(
      h('tr', { class: 'item-head' },
        h('th', { scope: 'rowgroup', colspan: 8 },
          h('span', { class: 'sku' }, item.sku), ' ',
          h('span', { class: 'item-title' }, item.title))));
    const levels = [...item.levels].sort((a, b) => compareCursors(a.location.id, b.location.id));
    if (levels.length === 0) {
      body.append(h('tr', { class: 'no-levels' }, h('td', { colspan: 8, class: 'empty' }, 'No stock level at any location yet.')));
    }
    for (const level of levels) body.append(levelRow(item, level));
    table.append(body);
  }
}

function levelRow(item, level) {
  const row = h('tr', {
    class: 'level',
    dataset: {
      testid: `level-${item.sku}-${level.location.id}`,
      sku: item.sku,
      locationId: level.location.id,
      levelId: level.id,
    },
  });
  const label = `${item.sku} at ${level.location.name}`;
  row.append(
    h('th', { scope: 'row', 'data-label': 'Location' }, level.location.name),
    h('td', { class: 'num', 'data-field': 'stocked', 'data-label': 'Stocked' }),
    h('td', { class: 'num', 'data-field': 'reserved', 'data-label': 'Reserved' }),
    h('td', { class: 'num', 'data-field': 'available', 'data-label': 'Available' }),
    h('td', { class: 'num', 'data-field': 'backorder', 'data-label': 'Backorder' }),
    h('td', { class: 'num', 'data-field': 'version', 'data-label': 'Version' }),
    h('td', { 'data-field': 'allow-backorder', 'data-label': 'Can backorder' }),
    h('td', { class: 'actions' },
      h('button', {
        type: 'button', class: 'secondary small edit-only', 'aria-expanded': 'false',
        'aria-label': `Edit stock of ${label}`, 'data-testid': 'edit-button',
        onclick: () => toggleEditor(row),
      }, 'Edit'),
      h('button', {
        type: 'button', class: 'secondary small', 'aria-label': `Ledger of ${label}`,
        'data-testid': 'ledger-button',
        onclick: () => openLedger(item.sku, level.location, row),
      }, 'Ledger')),
  );
  row.dataset.label = label;
  updateLevelRow(row, level);
  return row;
}

/** Shows a level's numbers in its row; the row remembers the version it shows. */
function updateLevelRow(row, level) {
  const backorder = Math.max(-level.stockedQuantity, 0);
  const cell = (field) => $(`[data-field="${field}"]`, row);
  cell('stocked').textContent = String(level.stockedQuantity);
  cell('reserved').textContent = String(level.reservedQuantity);
  cell('available').textContent = String(level.available);
  cell('backorder').textContent = String(backorder);
  cell('backorder').classList.toggle('backordered', backorder > 0);
  cell('version').textContent = String(level.version);
  cell('allow-backorder').textContent = level.allowBackorder ? 'Yes' : 'No';
  row.dataset.version = String(level.version);
  row.dataset.stocked = String(level.stockedQuantity);
  row.dataset.allowBackorder = String(level.allowBackorder);
  row.classList.remove('stale');
  const editor = editorOf(row);
  if (editor) {
    $('[data-role="editing-version"]', editor).textContent = String(level.version);
    $('[name="allowBackorder"]', editor).checked = level.allowBackorder;
  }
}

function flash(row) {
  row.classList.remove('flash');
  void row.offsetWidth; // restart the animation
  row.classList.add('flash');
}

function editorOf(row) {
  const next = row.nextElementSibling;
  return next && next.classList.contains('editor') ? next : null;
}

function toggleEditor(row) {
  const existing = editorOf(row);
  const button = $('[data-testid="edit-button"]', row);
  if (existing) {
    existing.remove();
    button.setAttribute('aria-expanded', 'false');
    button.focus();
    return;
  }
  const editor = buildEditor(row);
  row.after(editor);
  button.setAttribute('aria-expanded', 'true');
  button.setAttribute('aria-controls', editor.id);
  $('[data-testid="set-input"]', editor).focus();
}

function buildEditor(row) {
  const id = `editor-${row.dataset.levelId}`;
  const label = row.dataset.label;
  const setInput = h('input', {
    type: 'number', name: 'stocked', step: 1, required: true, inputmode: 'numeric',
    id: `${id}-set`, value: row.dataset.stocked, 'data-testid': 'set-input',
  });
  const allow = h('input', {
    type: 'checkbox', name: 'allowBackorder', id: `${id}-allow`, 'data-testid': 'allow-backorder',
  });
  allow.checked = row.dataset.allowBackorder === 'true';
  const deltaInput = h('input', {
    type: 'number', name: 'delta', step: 1, required: true, inputmode: 'numeric',
    id: `${id}-delta`, placeholder: '+5 or -2', 'data-testid': 'adjust-input',
  });
  const reasonInput = h('input', {
    type: 'text', name: 'reason', id: `${id}-reason`, maxlength: 255,
    placeholder: 'optional, e.g. recount', 'data-testid': 'adjust-reason',
  });
  const message = h('p', { class: 'message', role: 'status', 'data-testid': 'edit-message' });
  const conflict = h('div', { class: 'conflict', role: 'alert', 'data-testid': 'conflict', hidden: true });

  const setForm = h('form', { class: 'edit-form', 'aria-label': `Set stock of ${label}`, novalidate: true },
    h('label', { for: setInput.id }, 'New stocked quantity'),
    h('div', { class: 'inline-fields' },
      setInput,
      h('label', { class: 'checkbox', for: allow.id }, allow, ' allow backorder'),
      h('button', { type: 'submit', 'data-testid': 'set-submit' }, 'Set')));
  const adjustForm = h('form', { class: 'edit-form', 'aria-label': `Adjust stock of ${label}`, novalidate: true },
    h('label', { for: deltaInput.id }, 'Change by'),
    h('div', { class: 'inline-fields' },
      deltaInput,
      h('label', { class: 'reason-label', for: reasonInput.id }, 'reason'),
      reasonInput,
      h('button', { type: 'submit', 'data-testid': 'adjust-submit' }, 'Adjust')));

  setForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = setInput.value.trim();
    if (!/^-?\d+$/.test(value)) {
      setMessage(message, 'Enter a whole number of units.', 'error');
      setInput.focus();
      return;
    }
    const stockedQuantity = Number(value);
    writeLevel(row, editor, SET_STOCK, 'setStockLevel', {
      stockedQuantity,
      allowBackorder: allow.checked,
    }, `set stocked to ${stockedQuantity}`);
  });
  adjustForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = deltaInput.value.trim();
    if (!/^[+-]?\d+$/.test(value) || Number(value) === 0) {
      setMessage(message, 'Enter a non-zero whole number, e.g. 5 or -2.', 'error');
      deltaInput.focus();
      return;
    }
    const delta = Number(value);
    const reason = reasonInput.value.trim();
    writeLevel(row, editor, ADJUST_STOCK, 'adjustStock', {
      delta,
      reason: reason || null,
    }, `change stock by ${delta > 0 ? '+' : ''}${delta}`);
  });

  const editor = h('tr', { class: 'editor', id, 'data-testid': 'editor' },
    h('td', { colspan: 8 },
      h('div', { class: 'editor-body' },
        setForm,
        adjustForm,
        h('p', { class: 'hint editor-version' },
          'Editing version ', h('span', { 'data-role': 'editing-version' }, row.dataset.version),
          '. A change made meanwhile by anyone else is reported, never overwritten.'),
        h('button', {
          type: 'button', class: 'link', 'data-testid': 'edit-cancel',
          onclick: () => toggleEditor(row),
        }, 'Close editor')),
      conflict,
      message));
  editor.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      toggleEditor(row);
    }
  });
  return editor;
}

/** Sends one guarded write; on VERSION_CONFLICT shows the current level, writes nothing. */
async function writeLevel(row, editor, mutation, field, fields, attempted) {
  const message = $('[data-testid="edit-message"]', editor);
  const conflict = $('[data-testid="conflict"]', editor);
  const buttons = editor.querySelectorAll('button[type="submit"]');
  const expectedVersion = Number(row.dataset.version);
  const input = {
    sku: row.dataset.sku,
    stockLocationId: row.dataset.locationId,
    expectedVersion,
    ...fields,
  };
  buttons.forEach((button) => { button.disabled = true; });
  setMessage(message, 'Saving…', 'info');
  try {
    const data = await gql(mutation, { input });
    const level = data[field];
    conflict.hidden = true;
    conflict.replaceChildren();
    updateLevelRow(row, level);
    flash(row);
    setMessage(message,
      `Saved: stocked ${level.stockedQuantity}, available ${level.available}, now version ${level.version}.`,
      'success');
  } catch (err) {
    if (err instanceof ApiError && err.code === 'VERSION_CONFLICT') {
      setMessage(message, '');
      await showConflict(row, editor, err, expectedVersion, attempted);
    } else if (err instanceof ApiError && AUTH_CODES.has(err.code)) {
      panelError(message, err);
    } else {
      setMessage(message, `Not saved: ${describeError(err)}`, 'error');
    }
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
}

async function showConflict(row, editor, err, expectedVersion, attempted) {
  const conflict = $('[data-testid="conflict"]', editor);
  let current = null;
  try {
    const data = await gql(ITEM_QUERY, { sku: row.dataset.sku });
    const item = data.inventoryItem;
    current = item && item.levels.find((level) => level.location.id === row.dataset.locationId);
  } catch {
    // Shown below without the current numbers.
  }
  const currentVersion = current ? current.version : err.extensions.currentVersion;
  conflict.replaceChildren(...[
    h('strong', {}, 'Not saved: this level changed since you loaded it.'), ' ',
    `You edited version ${expectedVersion}; it is now version `,
    h('span', { 'data-testid': 'conflict-version' }, String(currentVersion ?? '?')), '. ',
    current
      ? [
          'Current stocked quantity: ',
          h('span', { 'data-testid': 'conflict-current' }, String(current.stockedQuantity)),
          ` (reserved ${current.reservedQuantity}, available ${current.available}). `,
        ]
      : 'Could not read the current value; refresh the table. ',
    `Your change (${attempted}) was not applied. Check the current value above; submitting again applies your change on top of version ${currentVersion ?? 'the current version'}.`,
  ].flat());
  conflict.hidden = false;
  if (current) {
    updateLevelRow(row, current);
    flash(row);
  }
}

// ---------------------------------------------------------------------------------------
// Ledger of one level

const LEDGER_QUERY = `query AdminLedger($sku: String!, $location: ID, $first: Int!, $after: String) {
  stockMovements(sku: $sku, stockLocationId: $location, first: $first, after: $after) {
    nodes { id delta reservedDelta reason stockedAfter reservedAfter orderId reservationId note createdAt }
    pageInfo { hasNextPage endCursor }
  }
}`;

const ledger = { sku: null, location: null, after: null };

async function openLedger(sku, location, row) {
  ledger.sku = sku;
  ledger.location = location;
  ledger.after = null;
  ledger.returnTo = $('[data-testid="ledger-button"]', row);
  const section = $('#ledger-section');
  section.hidden = false;
  $('#ledger-heading').textContent = `Ledger: ${sku} at ${location.name}`;
  $('#ledger-table tbody').replaceChildren();
  await loadLedger();
  $('#ledger-heading').focus();
  section.scrollIntoView({ block: 'start', behavior: 'smooth' });
}

async function loadLedger() {
  const message = $('#ledger-message');
  try {
    const data = await gql(LEDGER_QUERY, {
      sku: ledger.sku, location: ledger.location.id, first: LEDGER_PAGE, after: ledger.after,
    });
    const connection = data.stockMovements;
    const body = $('#ledger-table tbody');
    for (const movement of connection.nodes) {
      const reference = [
        movement.orderId ? `order ${movement.orderId}` : null,
        movement.reservationId ? `reservation ${movement.reservationId}` : null,
      ].filter(Boolean).join(', ');
      body.append(h('tr', { dataset: { movementId: movement.id } },
        h('td', { 'data-label': 'When' }, timeElement(movement.createdAt, formatDateTime(movement.createdAt))),
        h('td', { 'data-label': 'Reason' }, h('span', { class: `reason reason-${movement.reason.toLowerCase()}` }, movement.reason)),
        h('td', { class: 'num', 'data-label': 'Change' }, signed(movement.delta)),
        h('td', { class: 'num', 'data-label': 'Stocked after' }, String(movement.stockedAfter)),
        h('td', { class: 'num', 'data-label': 'Reserved change' }, signed(movement.reservedDelta)),
        h('td', { class: 'num', 'data-label': 'Reserved after' }, String(movement.reservedAfter)),
        h('td', { 'data-label': 'Order / reservation' }, reference || '—'),
        h('td', { 'data-label': 'Note' }, movement.note || '—')));
    }
    ledger.after = connection.pageInfo.endCursor;
    $('#ledger-more').hidden = !connection.pageInfo.hasNextPage;
    setMessage(message, body.rows.length === 0 ? 'No movements recorded.' : '');
  } catch (err) {
    panelError(message, err, 'Could not load the ledger: ');
  }
}

function signed(n) {
  return n > 0 ? `+${n}` : String(n);
}

function closeLedger() {
  $('#ledger-section').hidden = true;
  if (ledger.returnTo && ledger.returnTo.isConnected) ledger.returnTo.focus();
}

// ---------------------------------------------------------------------------------------
// Orders

// `newestFirst` lists the newest orders first; `after` then pages to older ones.
const ORDERS_QUERY = `query AdminOrders($first: Int!, $after: String, $status: OrderStatus) {
  orders(first: $first, after: $after, status: $status, newestFirst: true) {
    nodes {
      id paymentIntentId status rejectionReason refundId refundError createdAt
      salesChannel { id name }
      lines { sku quantity backorderedQuantity location { id name } }
    }
    pageInfo { hasNextPage endCursor }
  }
}`;

const orders = { after: null, loading: 0 };

async function loadOrders({ more = false } = {}) {
  const message = $('#orders-message');
  const ticket = ++orders.loading;
  const status = $('#orders-status').value || null;
  try {
    const data = await gql(ORDERS_QUERY, { first: ORDERS_PAGE, after: more ? orders.after : null, status });
    if (ticket !== orders.loading) return;
    const connection = data.orders;
    const body = $('#orders-table tbody');
    if (!more) body.replaceChildren();
    for (const order of connection.nodes) body.append(orderRow(order));
    orders.after = connection.pageInfo.endCursor;
    $('#orders-more').hidden = !connection.pageInfo.hasNextPage;
    setMessage(message, body.rows.length === 0 ? 'No orders yet.' : '');
  } catch (err) {
    if (ticket !== orders.loading) return;
    panelError(message, err, 'Could not load orders: ');
  }
}

function orderRow(order) {
  const rejected = order.status === 'REJECTED';
  const lines = h('ul', { class: 'lines' },
    order.lines.map((line) => h('li', {},
      h('span', { class: 'sku' }, line.sku), ` × ${line.quantity}`,
      line.location ? ` from ${line.location.name}` : '',
      line.backorderedQuantity > 0
        ? h('span', { class: 'badge badge-backorder' }, `${line.backorderedQuantity} backordered`)
        : '')));
  let outcome = '—';
  if (rejected) {
    let refund;
    if (order.refundId) refund = h('span', { class: 'refund refund-done' }, `Refunded (${order.refundId})`);
    else if (order.refundError) refund = h('span', { class: 'refund refund-failed' }, `Refund failed: ${order.refundError}`);
    else refund = h('span', { class: 'refund refund-none' }, 'No refund recorded');
    outcome = h('div', {},
      h('div', { class: 'rejection', 'data-testid': 'rejection-reason' }, order.rejectionReason || 'No reason given'),
      h('div', { 'data-testid': 'refund-state' }, refund));
  }
  return h('tr', { class: rejected ? 'rejected' : '', dataset: { orderId: order.id, status: order.status } },
    h('th', { scope: 'row', 'data-label': 'Order' },
      h('span', { class: 'order-id' }, `#${order.id}`),
      h('div', { class: 'muted small-text' }, order.paymentIntentId)),
    h('td', { 'data-label': 'Created' }, timeElement(order.createdAt, formatDateTime(order.createdAt))),
    h('td', { 'data-label': 'Status' },
      h('span', { class: `badge ${rejected ? 'badge-rejected' : 'badge-placed'}` }, rejected ? '✕ REJECTED' : 'PLACED')),
    h('td', { 'data-label': 'Channel' }, order.salesChannel ? order.salesChannel.name : '—'),
    h('td', { 'data-label': 'Lines' }, lines),
    h('td', { 'data-label': 'Rejection / refund' }, outcome));
}

// ---------------------------------------------------------------------------------------
// Reservations

const RESERVATIONS_QUERY = `query AdminReservations($first: Int!, $after: String) {
  reservations(status: ACTIVE, first: $first, after: $after) {
    nodes { id key status expiresAt salesChannel { id name } lines { sku quantity location { id name } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const reservations = { after: null, loading: 0 };

async function loadReservations({ more = false } = {}) {
  const message = $('#reservations-message');
  const ticket = ++reservations.loading;
  try {
    const data = await gql(RESERVATIONS_QUERY, { first: RESERVATIONS_PAGE, after: more ? reservations.after : null });
    if (ticket !== reservations.loading) return;
    const connection = data.reservations;
    const body = $('#reservations-table tbody');
    if (!more) body.replaceChildren();
    // Stored ACTIVE but already past expiry: the API reports EXPIRED; it holds nothing.
    for (const reservation of connection.nodes.filter((r) => r.status === 'ACTIVE')) {
      body.append(h('tr', { dataset: { reservationId: reservation.id } },
        h('th', { scope: 'row', 'data-label': 'Key' }, h('code', {}, reservation.key)),
        h('td', { 'data-label': 'Channel' }, reservation.salesChannel.name),
        h('td', { 'data-label': 'Lines' }, h('ul', { class: 'lines' },
          reservation.lines.map((line) => h('li', {},
            h('span', { class: 'sku' }, line.sku), ` × ${line.quantity} at ${line.location.name}`)))),
        h('td', { 'data-label': 'Expires' },
          timeElement(reservation.expiresAt, formatTime(reservation.expiresAt)), ' ',
          h('span', { class: 'muted', 'data-relative': reservation.expiresAt }, `(${formatRelative(reservation.expiresAt)})`))));
    }
    reservations.after = connection.pageInfo.endCursor;
    $('#reservations-more').hidden = !connection.pageInfo.hasNextPage;
    setMessage(message, body.rows.length === 0 ? 'No reservation is holding stock.' : '');
  } catch (err) {
    if (ticket !== reservations.loading) return;
    panelError(message, err, 'Could not load reservations: ');
  }
}

function refreshRelativeTimes() {
  for (const node of document.querySelectorAll('[data-relative]')) {
    node.textContent = `(${formatRelative(node.dataset.relative)})`;
  }
}

// ---------------------------------------------------------------------------------------
// Locations, channels and their mappings

const CATALOG_QUERY = `query AdminCatalog {
  stockLocations { id name levels { id } }
  salesChannels { id name locations { priority location { id name } } }
  shippingOptions { id name stockLocation { id } }
}`;

const MAP_LOCATION = `mutation AdminMapLocation($input: MapSalesChannelLocationInput!) {
  mapSalesChannelLocation(input: $input) { id name locations { priority location { id name } } }
}`;

const catalog = { locations: [] };

async function loadCatalog() {
  const message = $('#catalog-message');
  try {
    const data = await gql(CATALOG_QUERY);
    catalog.locations = data.stockLocations;
    const body = $('#locations-table tbody');
    body.replaceChildren();
    for (const location of data.stockLocations) {
      const options = data.shippingOptions.filter((option) => option.stockLocation.id === location.id);
      body.append(h('tr', { dataset: { locationId: location.id } },
        h('td', { 'data-label': 'Id' }, location.id),
        h('th', { scope: 'row', 'data-label': 'Name' }, location.name),
        h('td', { class: 'num', 'data-label': 'Levels' }, String(location.levels.length)),
        h('td', { 'data-label': 'Shipping options' }, options.map((option) => option.name).join(', ') || '—')));
    }
    const channels = $('#channels');
    channels.replaceChildren(...data.salesChannels.map(channelBlock));
    if (data.salesChannels.length === 0) channels.append(h('p', { class: 'empty' }, 'No sales channels yet.'));
    setMessage(message, '');
  } catch (err) {
    panelError(message, err, 'Could not load locations and channels: ');
  }
}

function channelBlock(channel) {
  const block = h('section', { class: 'channel', 'aria-labelledby': `channel-${channel.id}-name`, dataset: { channelId: channel.id } });
  const message = h('p', { class: 'message', role: 'status' });
  const rows = channel.locations.map((mapping) => {
    const inputId = `priority-${channel.id}-${mapping.location.id}`;
    const input = h('input', {
      type: 'number', step: 1, id: inputId, value: mapping.priority, required: true, inputmode: 'numeric',
      class: 'priority-input', 'data-testid': `priority-${channel.id}-${mapping.location.id}`,
      disabled: session.readOnly,
    });
    const form = h('form', { class: 'inline-fields', novalidate: true },
      h('label', { class: 'visually-hidden', for: inputId }, `Priority of ${mapping.location.name} in ${channel.name}`),
      input,
      h('button', { type: 'submit', class: 'secondary small edit-only' }, 'Save'));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      mapLocation(channel, mapping.location.id, input.value, message, block);
    });
    return h('tr', {},
      h('th', { scope: 'row', 'data-label': 'Location' }, mapping.location.name),
      h('td', { 'data-label': 'Priority' }, form));
  });
  const unmapped = catalog.locations.filter((location) => !channel.locations.some((m) => m.location.id === location.id));
  let addForm = null;
  if (unmapped.length > 0) {
    const selectId = `map-${channel.id}-location`;
    const priorityId = `map-${channel.id}-priority`;
    const select = h('select', { id: selectId },
      unmapped.map((location) => h('option', { value: location.id }, location.name)));
    const next = channel.locations.reduce((max, m) => Math.max(max, m.priority + 1), 0);
    const priority = h('input', { type: 'number', step: 1, id: priorityId, value: next, class: 'priority-input', inputmode: 'numeric' });
    addForm = h('form', { class: 'inline-fields add-mapping edit-only', novalidate: true },
      h('label', { for: selectId }, 'Also sell from'), select,
      h('label', { for: priorityId }, 'priority'), priority,
      h('button', { type: 'submit', class: 'secondary small' }, 'Add'));
    addForm.addEventListener('submit', (event) => {
      event.preventDefault();
      mapLocation(channel, select.value, priority.value, message, block);
    });
  }
  block.append(
    h('h4', { id: `channel-${channel.id}-name` }, channel.name, ' ', h('span', { class: 'muted' }, `#${channel.id}`)),
    rows.length
      ? h('table', { class: 'data mappings' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Location'), h('th', { scope: 'col' }, 'Priority (lower first)'))),
          h('tbody', {}, rows))
      : h('p', { class: 'empty' }, 'Not mapped to any location: it cannot sell anything.'),
    message);
  if (addForm) message.before(addForm);
  return block;
}

async function mapLocation(channel, locationId, priorityText, message, block) {
  if (!/^-?\d+$/.test(String(priorityText).trim())) {
    setMessage(message, 'Priority must be a whole number.', 'error');
    return;
  }
  try {
    const data = await gql(MAP_LOCATION, {
      input: { salesChannelId: channel.id, stockLocationId: locationId, priority: Number(priorityText) },
    });
    const updated = channelBlock(data.mapSalesChannelLocation);
    block.replaceWith(updated);
    setMessage($('.message', updated), 'Saved.', 'success');
  } catch (err) {
    panelError(message, err, 'Not saved: ');
  }
}

// ---------------------------------------------------------------------------------------
// Chart of the last hour (uPlot)

// One bucket per minute of the last `minutes`, oldest first, zeros included.
const ACTIVITY_QUERY = `query AdminActivity($minutes: Int!) {
  activity(minutes: $minutes) { start ordersPlaced outOfStockRefusals backorders }
}`;

const SERIES = [
  { key: 'ordersPlaced', label: 'Orders placed', color: '#2563eb' },
  { key: 'outOfStockRefusals', label: 'Out-of-stock refusals', color: '#dc2626' },
  { key: 'backorders', label: 'Backorders', color: '#9333ea' },
];

const chart = {
  plot: null,
  observer: null,
  destroy() {
    if (this.observer) this.observer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
    this.observer = null;
    $('#activity-chart').replaceChildren();
  },
};

async function loadActivity() {
  const message = $('#activity-message');
  try {
    const data = await gql(ACTIVITY_QUERY, { minutes: 60 });
    const buckets = data.activity;
    const totals = SERIES.map((series) => buckets.reduce((sum, bucket) => sum + bucket[series.key], 0));
    $('#activity-summary').textContent =
      `Last 60 minutes: ${totals[0]} orders placed, ${totals[1]} out-of-stock refusals, ${totals[2]} backorders.`;
    drawChart(buckets);
    setMessage(message, '');
  } catch (err) {
    $('#activity-summary').textContent = '';
    panelError(message, err, 'Chart unavailable: ');
  }
}

function drawChart(buckets) {
  const container = $('#activity-chart');
  const data = [
    buckets.map((bucket) => Math.floor(new Date(bucket.start).getTime() / 1000)),
    ...SERIES.map((series) => buckets.map((bucket) => bucket[series.key])),
  ];
  if (typeof window.uPlot !== 'function') {
    setMessage($('#activity-message'), 'The chart library did not load.', 'error');
    return;
  }
  if (chart.plot) {
    chart.plot.setData(data);
    return;
  }
  const width = Math.max(container.clientWidth, 240);
  const options = {
    width,
    height: 200,
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
    scales: { y: { range: (_u, _min, max) => [0, Math.max(4, Math.ceil(max * 1.1))] } },
    axes: [
      {
        stroke: '#475569', grid: { stroke: '#e2e8f0' }, ticks: { stroke: '#cbd5e1' }, space: 70,
        values: (_u, splits) => splits.map((v) => minuteFormat.format(new Date(v * 1000))),
      },
      {
        stroke: '#475569', grid: { stroke: '#e2e8f0' }, ticks: { stroke: '#cbd5e1' },
        incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000],
        values: (_u, splits) => splits.map((v) => String(v)),
        size: 40,
      },
    ],
    series: [
      { label: 'Minute', value: (_u, v) => (v == null ? '—' : timeFormat.format(new Date(v * 1000))) },
      ...SERIES.map((series) => ({
        label: series.label,
        stroke: series.color,
        fill: `${series.color}1f`,
        width: 2,
        // Per-minute counts: a step per minute reads better than a slope between minutes.
        paths: window.uPlot.paths.stepped({ align: 1 }),
        points: { show: false },
        value: (_u, v) => (v == null ? '—' : String(v)),
      })),
    ],
  };
  container.replaceChildren();
  chart.plot = new window.uPlot(options, data, container);
  chart.observer = new ResizeObserver(() => {
    const next = Math.max(container.clientWidth, 240);
    if (chart.plot && Math.abs(next - chart.plot.width) > 2) chart.plot.setSize({ width: next, height: 200 });
  });
  chart.observer.observe(container);
}

// ---------------------------------------------------------------------------------------
// Live backorder feed: graphql-transport-ws, resumed from the last cursor

const EVENT_FIELDS = 'id sku orderId quantity stockedQuantity backorderedQuantity occurredAt location { id name }';

// `newestFirst` with `first: n`: the n newest stored events, newest first.
const RECENT_EVENTS_QUERY = `query AdminRecentBackorders($first: Int!) {
  backorderEvents(first: $first, newestFirst: true) { ${EVENT_FIELDS} }
}`;

const FEED_SUBSCRIPTION = `subscription AdminBackorderFeed($after: ID) {
  backorderEvents(after: $after) { ${EVENT_FIELDS} }
}`;

const feed = {
  stopped: true,
  socket: null,
  /** Id of the last event shown: every (re)subscription asks for the events after it. */
  cursor: null,
  attempt: 0,
  reconnectTimer: null,
  pingTimer: null,
  pongTimer: null,
  healthyTimer: null,
  subscriptionId: 0,
  connects: 0,
  duplicates: 0,
  received: 0,
};

async function startFeed() {
  stopFeed();
  feed.stopped = false;
  feed.cursor = null;
  feed.connects = 0;
  feed.duplicates = 0;
  feed.received = 0;
  const list = $('#feed-list');
  list.replaceChildren();
  list.setAttribute('aria-busy', 'true');
  setFeedState('connecting', 'Loading recent backorders…');
  try {
    const data = await gql(RECENT_EVENTS_QUERY, { first: FEED_KEEP });
    // Oldest first, so the cursor ends at the newest.
    for (const event of [...data.backorderEvents].reverse()) addEvent(event, false);
  } catch (err) {
    if (err instanceof ApiError && AUTH_CODES.has(err.code)) {
      panelError($('#feed-status'), err);
      return;
    }
    // Without the newest events, replay the stored log from its start (below).
  }
  list.removeAttribute('aria-busy');
  if (feed.stopped) return;
  // No event yet: every event from the very first one counts as new.
  if (feed.cursor === null) feed.cursor = '0';
  connectFeed();
}

function stopFeed() {
  feed.stopped = true;
  clearTimeout(feed.reconnectTimer);
  stopHeartbeat();
  const socket = feed.socket;
  feed.socket = null;
  if (socket) socket.close(1000, 'done');
  setFeedState('idle', 'Not connected');
}

function setFeedState(state, text) {
  const section = $('#feed-section');
  section.dataset.state = state;
  section.dataset.connects = String(feed.connects);
  section.dataset.lastCursor = feed.cursor ?? '';
  section.dataset.duplicatesDropped = String(feed.duplicates);
  const status = $('#feed-status');
  status.textContent = text;
  status.dataset.state = state;
  $('#feed-reconnect').hidden = !(state === 'reconnecting' || state === 'stopped');
}

function connectFeed() {
  clearTimeout(feed.reconnectTimer);
  if (feed.stopped || !session.key) return;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;
  let socket;
  try {
    socket = new WebSocket(url, 'graphql-transport-ws');
  } catch {
    scheduleReconnect();
    return;
  }
  feed.socket = socket;
  let acknowledged = false;
  setFeedState('connecting', feed.connects === 0 ? 'Connecting…' : 'Reconnecting…');

  socket.addEventListener('open', () => {
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${session.key}` } }));
  });
  socket.addEventListener('message', (message) => {
    if (socket !== feed.socket) return;
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    switch (frame.type) {
      case 'connection_ack':
        acknowledged = true;
        feed.connects += 1;
        // The backoff starts over only once a connection has proved itself, so a server
        // that accepts and then fails every subscription is not hammered.
        clearTimeout(feed.healthyTimer);
        feed.healthyTimer = setTimeout(() => {
          if (socket === feed.socket) feed.attempt = 0;
        }, HEALTHY_AFTER_MS);
        feed.subscriptionId += 1;
        socket.send(JSON.stringify({
          id: String(feed.subscriptionId),
          type: 'subscribe',
          payload: { query: FEED_SUBSCRIPTION, operationName: 'AdminBackorderFeed', variables: { after: feed.cursor } },
        }));
        setFeedState('live', 'Live');
        startHeartbeat(socket);
        break;
      case 'next': {
        const payload = frame.payload || {};
        if (payload.data) feed.attempt = 0;
        if (payload.errors && payload.errors.length) feedErrors(socket, payload.errors);
        if (payload.data && payload.data.backorderEvents) addEvent(payload.data.backorderEvents, true);
        break;
      }
      case 'error':
        feedErrors(socket, Array.isArray(frame.payload) ? frame.payload : [frame.payload]);
        break;
      case 'complete':
        // The server ended the stream (it is stopping, or the key was revoked): start
        // over on a new connection, which resumes after the cursor.
        socket.close(1000, 'resubscribe');
        break;
      case 'ping':
        socket.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'pong':
        socket.pongSeen = true;
        clearTimeout(feed.pongTimer);
        break;
      default:
        break;
    }
  });
  socket.addEventListener('close', (event) => {
    if (socket !== feed.socket) return;
    feed.socket = null;
    stopHeartbeat();
    if (feed.stopped) return;
    // Refused before the ack: the key may have been revoked. Ask over HTTP to tell that
    // apart from a server that is only restarting.
    if (!acknowledged && (event.code === 1002 || event.code === 4401 || event.code === 4403)) {
      checkKeyThenReconnect();
      return;
    }
    scheduleReconnect();
  });
}

async function checkKeyThenReconnect() {
  try {
    await gql('query AdminCheckKey { stockLocations { id } }');
  } catch (err) {
    if (err instanceof ApiError && AUTH_CODES.has(err.code)) {
      panelError($('#feed-status'), err);
      return;
    }
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (feed.stopped) return;
  clearTimeout(feed.reconnectTimer);
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** feed.attempt);
  const delay = Math.round(base * (0.75 + Math.random() * 0.5));
  feed.attempt += 1;
  const seconds = Math.max(1, Math.round(delay / 1000));
  setFeedState('reconnecting', `Disconnected; reconnecting in ${seconds} s (attempt ${feed.attempt})`);
  feed.reconnectTimer = setTimeout(connectFeed, delay);
}

function feedErrors(socket, errors) {
  const first = errors[0] || {};
  const code = first.extensions && first.extensions.code;
  const text = code ? `${first.message} (${code})` : first.message || 'subscription failed';
  if (code === 'UNAUTHENTICATED') {
    // Closing reconnects; a revoked key is then refused at `connection_init`, and
    // the HTTP check after that refusal ends the session.
    socket.close(1000, 'unauthenticated');
    return;
  }
  if (code === 'FORBIDDEN' || code === 'BAD_USER_INPUT') {
    feed.stopped = true;
    socket.close(1000, 'stopped');
    setFeedState('stopped', `Live feed stopped: ${text}`);
    return;
  }
  setFeedState('reconnecting', `Live feed error: ${text}`);
  socket.close(1000, 'error');
}

function startHeartbeat(socket) {
  stopHeartbeat();
  feed.pingTimer = setInterval(() => {
    if (socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ type: 'ping' }));
    // Only a server that answered pings before is expected to answer this one; a silent
    // network then shows as a missing pong and the socket is replaced.
    if (socket.pongSeen) {
      clearTimeout(feed.pongTimer);
      feed.pongTimer = setTimeout(() => socket.close(4408, 'no pong'), PONG_WITHIN_MS);
    }
  }, PING_EVERY_MS);
  socket.send(JSON.stringify({ type: 'ping' }));
}

function stopHeartbeat() {
  clearInterval(feed.pingTimer);
  clearTimeout(feed.pongTimer);
  clearTimeout(feed.healthyTimer);
}

/** Shows one event, unless it is not after the cursor (then it was shown already). */
function addEvent(event, live) {
  if (feed.cursor !== null && compareCursors(event.id, feed.cursor) <= 0) {
    feed.duplicates += 1;
    $('#feed-section').dataset.duplicatesDropped = String(feed.duplicates);
    return;
  }
  feed.cursor = event.id;
  feed.received += 1;
  const list = $('#feed-list');
  const item = h('li', {
    class: live ? 'feed-event new' : 'feed-event',
    dataset: { eventId: event.id, testid: 'feed-event', sku: event.sku, orderId: event.orderId },
  },
  timeElement(event.occurredAt, formatTime(event.occurredAt)),
  h('span', { class: 'feed-main' }, h('span', { class: 'sku' }, event.sku), ` at ${event.location.name}`),
  h('span', { class: 'feed-detail' },
    `${event.backorderedQuantity} of ${event.quantity} backordered · stock now ${event.stockedQuantity} · order #${event.orderId} · event ${event.id}`));
  list.prepend(item);
  while (list.children.length > FEED_KEEP) list.lastElementChild.remove();
  $('#feed-section').dataset.lastCursor = feed.cursor;
  if (live) {
    markStale(event.sku, event.location.id);
    refreshSoon();
  }
}

/** A level the table shows changed elsewhere: say so (an edit would report a conflict). */
function markStale(sku, locationId) {
  for (const row of document.querySelectorAll('tr.level')) {
    if (row.dataset.sku === sku && row.dataset.locationId === locationId) row.classList.add('stale');
  }
}

// ---------------------------------------------------------------------------------------
// Periodic refresh of the panels that change on their own

let refreshTimer = null;
let refreshSoonTimer = null;

function startRefresh() {
  stopRefresh();
  refreshTimer = setInterval(() => {
    if (document.hidden || !session.key) return;
    refreshPanels();
  }, REFRESH_MS);
}

function stopRefresh() {
  clearInterval(refreshTimer);
  clearTimeout(refreshSoonTimer);
}

function refreshPanels() {
  loadActivity();
  // Only the first page refreshes by itself; paging back would lose the user's place.
  if ($('#orders-more').dataset.paged !== 'true') loadOrders();
  loadReservations();
  refreshRelativeTimes();
}

function refreshSoon() {
  clearTimeout(refreshSoonTimer);
  refreshSoonTimer = setTimeout(() => {
    if (session.key) {
      loadActivity();
      if ($('#orders-more').dataset.paged !== 'true') loadOrders();
    }
  }, 1000);
}

// ---------------------------------------------------------------------------------------
// Wiring

function init() {
  $('#key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('#key-input').value);
  });
  $('#sign-out').addEventListener('click', () => signOut());

  let searchTimer = null;
  const runSearch = () => {
    clearTimeout(searchTimer);
    const value = $('#item-search-input').value.trim();
    if (value === items.search) return;
    items.search = value;
    items.cursors = [null];
    items.page = 0;
    loadItems();
  };
  $('#item-search').addEventListener('submit', (event) => {
    event.preventDefault();
    runSearch();
  });
  $('#item-search-input').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 350);
  });
  $('#items-prev').addEventListener('click', () => {
    if (items.page > 0) {
      items.page -= 1;
      loadItems();
    }
  });
  $('#items-next').addEventListener('click', () => {
    if (items.cursors.length > items.page + 1) {
      items.page += 1;
      loadItems();
    }
  });

  $('#ledger-close').addEventListener('click', closeLedger);
  $('#ledger-more').addEventListener('click', () => loadLedger());
  $('#ledger-section').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeLedger();
  });

  $('#orders-status').addEventListener('change', () => {
    $('#orders-more').dataset.paged = 'false';
    loadOrders();
  });
  $('#orders-refresh').addEventListener('click', () => {
    $('#orders-more').dataset.paged = 'false';
    loadOrders();
  });
  $('#orders-more').addEventListener('click', () => {
    $('#orders-more').dataset.paged = 'true';
    loadOrders({ more: true });
  });
  $('#reservations-refresh').addEventListener('click', () => loadReservations());
  $('#reservations-more').addEventListener('click', () => loadReservations({ more: true }));
  $('#catalog-refresh').addEventListener('click', () => loadCatalog());
  $('#activity-refresh').addEventListener('click', () => loadActivity());
  $('#feed-reconnect').addEventListener('click', () => {
    if (feed.stopped) {
      startFeed();
    } else {
      feed.attempt = 0;
      connectFeed();
    }
  });
  window.addEventListener('online', () => {
    if (!feed.stopped && !feed.socket) {
      feed.attempt = 0;
      connectFeed();
    }
  });

  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) {
    signIn(stored);
  } else {
    $('#key-input').focus();
  }
}

init();
