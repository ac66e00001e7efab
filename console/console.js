// FastHook operator console: a dependency-free client of the public API of this origin.
// The page is served under a strict CSP, so every node is built with the DOM API and no
// string from the API is ever parsed as markup.

const POLL_DETAIL_MS = 2000;   // detail pages and the connections table
const POLL_LIST_MS = 5000;     // events and issues lists
const POLL_SLOW_MS = 10000;    // destinations list, backlog chart, engine state
const NAMES_TTL_MS = 30000;    // sources/destinations/connections names cache
const PAGE_LIMIT = 100;
const CACHE_LIMIT = 250;       // one page of each, the most a page holds: never every page
const KEYS = { team: 'fasthook.team', key: 'fasthook.apiKey', admin: 'fasthook.adminKey' };
const EVENT_STATUSES = ['HOLD', 'QUEUED', 'SCHEDULED', 'FAILED', 'SUCCESSFUL', 'CANCELLED'];

// ---------------------------------------------------------------- DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

function setProps(el, props) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function appendAll(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  appendAll(el, children);
  return el;
}

const enc = encodeURIComponent;
const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;

// Query strings: arrays repeat their key (`status=HOLD&status=FAILED`), empties are dropped.
function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v != null && v !== '') q.append(k, String(v));
  }
  return q;
}

// ---------------------------------------------------------------- formatting

const dateFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

function timeEl(iso) {
  if (!iso) return h('span', { class: 'muted', text: '—' });
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso, text: Number.isNaN(d.getTime()) ? iso : dateFmt.format(d) });
}

const rateText = (limit, period) => (limit == null ? 'unlimited' : `${limit} / ${period || 'second'}`);
const dash = (v) => (v == null || v === '' ? '—' : String(v));

function duration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  if (m < 60) return s ? `${m} min ${s} s` : `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// datetime-local is local time; the API wants RFC 3339 UTC. A value without seconds used as
// an upper bound means the whole minute.
function localInputToIso(value, endOfMinute = false) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  if (endOfMinute && value.length <= 16) d.setSeconds(59, 999);
  return d.toISOString();
}

function isoToLocalInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// Countdowns use the gateway's clock (from the Date header), not a possibly skewed laptop's.
let clockSkewMs = 0;
function noteServerDate(res) {
  const d = Date.parse(res.headers.get('date') || '');
  if (Number.isNaN(d)) return;
  const skew = d - Date.now();
  // The header has whole seconds: only follow a difference it cannot explain.
  if (Math.abs(skew - clockSkewMs) > 1500) clockSkewMs = skew;
}
const serverNow = () => Date.now() + clockSkewMs;

const STATUS_CLASS = {
  HOLD: 'b-warn', QUEUED: 'b-info', SCHEDULED: 'b-info', FAILED: 'b-bad', SUCCESSFUL: 'b-ok',
  CANCELLED: 'b-idle', OPENED: 'b-bad', ACKNOWLEDGED: 'b-warn', RESOLVED: 'b-ok', DISMISSED: 'b-idle',
  Active: 'b-ok', Paused: 'b-warn', Disabled: 'b-idle', Enabled: 'b-ok',
};
const badge = (text, extra = {}) =>
  h('span', { ...extra, class: `badge ${STATUS_CLASS[text] || 'b-idle'} ${extra.class || ''}`.trim(), text });

// ---------------------------------------------------------------- credentials and API

const creds = {
  get team() { return sessionStorage.getItem(KEYS.team) || ''; },
  get key() { return sessionStorage.getItem(KEYS.key) || ''; },
  get admin() { return sessionStorage.getItem(KEYS.admin) || ''; },
  signedIn() { return Boolean(this.team && this.key); },
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = 'GET', query, body, admin = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (admin) {
    if (!creds.admin) throw new ApiError(0, 'NO_ADMIN_KEY', 'Sign in with an admin key to do this.');
    headers.Authorization = `Bearer ${creds.admin}`;
  } else {
    headers.Authorization = `Bearer ${creds.key}`;
    headers['x-team-id'] = creds.team;
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const q = query ? query.toString() : '';
  let res;
  try {
    res = await fetch(q ? `${path}?${q}` : path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, 'NETWORK_ERROR', `The gateway did not answer (${e.message}).`);
  }
  noteServerDate(res);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (res.ok) return data;
  const err = new ApiError(res.status, data?.code || `HTTP_${res.status}`, data?.message || res.statusText || 'request failed');
  if (res.status === 401 || res.status === 403) {
    if (admin) {
      // A wrong admin key must not end the team session: only the admin controls go.
      sessionStorage.removeItem(KEYS.admin);
      err.message += '. The admin key was forgotten; sign in again with the right one to pause or resume the engine.';
      renderEngineControls();
    } else {
      signOut(err);
      err.handled = true;
    }
  }
  throw err;
}

// ---------------------------------------------------------------- messages

let errorFromPoll = false;

function showError(err, fromPoll = false) {
  if (err?.handled && !fromPoll) return;
  const box = $('#error');
  const code = err instanceof ApiError ? err.code : 'CLIENT_ERROR';
  const status = err instanceof ApiError && err.status ? ` (HTTP ${err.status})` : '';
  box.replaceChildren(
    h('span', { class: 'msg-text' }, h('span', { class: 'msg-code', text: `${code}${status}: ` }), err?.message || String(err)),
    h('button', { type: 'button', class: 'small', onclick: clearError }, 'Dismiss'),
  );
  errorFromPoll = fromPoll;
}

function clearError() { $('#error').replaceChildren(); errorFromPoll = false; }

let noticeTimer = null;
function notice(text) {
  clearTimeout(noticeTimer);
  $('#notice').replaceChildren(h('span', { class: 'msg-text', text }));
  noticeTimer = setTimeout(() => $('#notice').replaceChildren(), 8000);
}

// ---------------------------------------------------------------- polling

// One timer per resource; a tick is skipped while the previous one is in flight or while the
// tab is hidden, so a slow gateway never gets a pile of requests from a forgotten tab.
class Poller {
  constructor(fn, ms) { this.fn = fn; this.ms = ms; this.timer = null; this.busy = false; this.again = false; }
  start() { this.stop(); this.timer = setInterval(() => this.tick(), this.ms); this.tick(true); return this; }
  stop() { clearInterval(this.timer); this.timer = null; }
  async tick(force = false) {
    if (this.busy) { if (force) this.again = true; return; }
    if (!force && (!this.timer || document.visibilityState !== 'visible')) return;
    this.busy = true;
    try {
      await this.fn();
      if (errorFromPoll) clearError();
    } catch (e) {
      if (!e?.handled) showError(e, true);
    } finally {
      this.busy = false;
      if (this.again && this.timer) { this.again = false; this.tick(true); }
    }
  }
}

// What the current route owns; the router stops all of it when the route changes.
let page = { pollers: [], timers: [], gen: 0 };

function stopPage() {
  page.pollers.forEach((p) => p.stop());
  page.timers.forEach((t) => clearInterval(t));
  page = { pollers: [], timers: [], gen: page.gen + 1 };
  closeMenu(false);
  cancelDialog();
}

function makeCtx() {
  const gen = page.gen;
  return {
    alive: () => gen === page.gen,
    poll(fn, ms) {
      const p = new Poller(async () => { if (gen === page.gen) await fn(); }, ms);
      page.pollers.push(p);
      return p.start();
    },
    every(fn, ms) { page.timers.push(setInterval(fn, ms)); },
  };
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible') return;
  page.pollers.forEach((p) => p.tick());
  enginePoller?.tick();
});

// ---------------------------------------------------------------- names cache

const names = {
  at: 0,
  pending: null,
  sources: new Map(),
  destinations: new Map(),
  connections: new Map(),
};

// At most one refresh per NAMES_TTL_MS, and one in flight at a time.
function refreshNames() {
  if (names.pending) return names.pending;
  if (Date.now() - names.at < NAMES_TTL_MS) return Promise.resolve();
  const one = (path) => api(path, { query: qs({ limit: CACHE_LIMIT }) });
  names.pending = Promise.all([one('/v1/sources'), one('/v1/destinations'), one('/v1/connections')])
    .then(([s, d, c]) => {
      names.sources = new Map(s.models.map((x) => [x.id, x]));
      names.destinations = new Map(d.models.map((x) => [x.id, x]));
      names.connections = new Map(c.models.map((x) => [x.id, x]));
      names.at = Date.now();
    })
    .finally(() => { names.pending = null; });
  return names.pending;
}

const sourceName = (id) => names.sources.get(id)?.name || id;
const destinationName = (id) => names.destinations.get(id)?.name || id;
const connectionName = (id) => names.connections.get(id)?.name || id;

function destinationLink(id) {
  return h('a', { href: `#/destinations/${enc(id)}`, 'data-fk': `dest-${id}` }, destinationName(id));
}

// ---------------------------------------------------------------- tables

// Rows are updated in place, keyed by id, so a poll does not steal keyboard focus or close an
// open menu: an unchanged row is left alone, a changed one is rebuilt and its focus restored.
function syncRows(tbody, items, { attr, sig, cells, empty, colspan }) {
  const existing = new Map();
  for (const tr of tbody.querySelectorAll(`:scope > tr[${attr}]`)) existing.set(tr.getAttribute(attr), tr);
  tbody.querySelector(':scope > tr.empty-row')?.remove();
  let prev = null;
  const seen = new Set();
  for (const item of items) {
    const id = item.id;
    seen.add(id);
    let tr = existing.get(id);
    const s = sig(item);
    if (!tr) {
      tr = h('tr', { [attr]: id });
      fillRow(tr, cells(item), s);
    } else if (tr.dataset.sig !== s && !(openMenu && tr.contains(openMenu.button))) {
      fillRow(tr, cells(item), s);
    }
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (tr !== want) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const [id, tr] of existing) {
    if (seen.has(id)) continue;
    if (openMenu && tr.contains(openMenu.button)) closeMenu(false);
    if (tr.contains(document.activeElement)) focusHeading();
    tr.remove();
  }
  if (!items.length) tbody.append(h('tr', { class: 'empty-row' }, h('td', { colspan }, empty)));
}

function fillRow(tr, tds, s) {
  const active = document.activeElement;
  const fk = tr.contains(active) ? active.getAttribute('data-fk') : null;
  tr.replaceChildren(...tds);
  tr.dataset.sig = s;
  if (fk !== null) {
    const again = tr.querySelector(`[data-fk="${CSS.escape(fk)}"]`) || tr.querySelector('a, button');
    again?.focus();
  }
}

function table(id, caption, headers) {
  const tbody = h('tbody');
  const t = h('table', { id },
    h('caption', { class: 'sr-only', text: caption }),
    h('thead', null, h('tr', null, headers.map((x) => {
      const [label, cls] = Array.isArray(x) ? x : [x];
      return h('th', { scope: 'col', class: cls }, label);
    }))),
    tbody);
  return { wrap: h('div', { class: 'table-wrap' }, t), tbody };
}

// Next/Previous over `pagination.next`: a stack of the cursors that led to each page.
function makePager(onChange) {
  const stack = [null];
  let next = null;
  const prevB = h('button', { type: 'button', id: 'page-prev', class: 'pager-prev' }, '← Previous');
  const nextB = h('button', { type: 'button', id: 'page-next', class: 'pager-next' }, 'Next →');
  const label = h('span', { class: 'muted', 'aria-live': 'polite' });
  prevB.addEventListener('click', () => { if (stack.length > 1) { stack.pop(); onChange(); } });
  nextB.addEventListener('click', () => { if (next) { stack.push(next); onChange(); } });
  const pager = {
    el: h('nav', { class: 'pager', 'aria-label': 'Pages' }, prevB, label, nextB),
    cursor: () => stack[stack.length - 1],
    update(pagination, count) {
      next = pagination?.next || null;
      prevB.disabled = stack.length <= 1;
      nextB.disabled = !next;
      label.textContent = `Page ${stack.length} · ${plural(count, 'row')}`;
    },
  };
  pager.update(null, 0);
  return pager;
}

function pageHead(title, ...rest) {
  document.title = `${title} · FastHook console`;
  return h('div', { class: 'page-head' }, h('h1', { tabindex: '-1', text: title }), rest);
}

function focusHeading() { ($('#view h1') || $('#view'))?.focus(); }

// ---------------------------------------------------------------- actions menu

let openMenu = null;

function actionsMenu(label, items, onPick) {
  const menu = h('div', { class: 'menu', role: 'menu', 'aria-label': label, hidden: true });
  const button = h('button', {
    type: 'button', class: 'actions-button small', 'aria-haspopup': 'menu', 'aria-expanded': 'false',
    'aria-label': label, 'data-fk': 'actions',
  }, 'Actions', h('span', { class: 'caret', 'aria-hidden': 'true', text: '▾' }));
  for (const [action, text, danger] of items) {
    menu.append(h('button', {
      type: 'button', role: 'menuitem', tabindex: '-1', 'data-action': action, class: danger ? 'danger-item' : null,
    }, text));
  }
  const focusItem = (which) => {
    const list = [...menu.querySelectorAll('[role="menuitem"]')];
    const i = list.indexOf(document.activeElement);
    const n = list.length;
    const target = which === 'first' ? 0 : which === 'last' ? n - 1 : which === 'next' ? (i + 1) % n : (i - 1 + n) % n;
    list[target]?.focus();
  };
  button.addEventListener('click', () => {
    if (openMenu?.button === button) closeMenu(true);
    else { showMenu(button, menu); focusItem('first'); }
  });
  button.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      showMenu(button, menu);
      focusItem(e.key === 'ArrowDown' ? 'first' : 'last');
    }
  });
  menu.addEventListener('keydown', (e) => {
    const moves = { ArrowDown: 'next', ArrowUp: 'prev', Home: 'first', End: 'last' };
    if (moves[e.key]) { e.preventDefault(); focusItem(moves[e.key]); }
    else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); closeMenu(true); }
    else if (e.key === 'Tab') closeMenu(false);
  });
  menu.addEventListener('click', (e) => {
    const item = e.target.closest('[data-action]');
    if (!item) return;
    closeMenu(true);
    onPick(item.dataset.action, button);
  });
  return h('div', { class: 'actions' }, button, menu);
}

function showMenu(button, menu) {
  closeMenu(false);
  menu.hidden = false;
  button.setAttribute('aria-expanded', 'true');
  openMenu = { button, menu };
}

function closeMenu(returnFocus) {
  if (!openMenu) return;
  const { button, menu } = openMenu;
  openMenu = null;
  menu.hidden = true;
  button.setAttribute('aria-expanded', 'false');
  if (returnFocus && button.isConnected) button.focus();
}

document.addEventListener('pointerdown', (e) => {
  if (openMenu && !openMenu.menu.contains(e.target) && !openMenu.button.contains(e.target)) closeMenu(false);
});

// ---------------------------------------------------------------- confirmation dialog

let dialogFinish = null;

// Resolves null when cancelled, else `{ drain }` (the drain body, or null when left empty).
function confirmDialog({ title, message, ok = 'Confirm', danger = false, drain = false, returnFocus }) {
  cancelDialog();
  const dlg = $('#confirm');
  const okB = $('#confirm-ok');
  const cancelB = $('#confirm-cancel');
  const rate = $('#confirm-drain-rate');
  const period = $('#confirm-drain-period');
  const err = $('#confirm-drain-error');
  $('#confirm-title').textContent = title;
  $('#confirm-message').replaceChildren(...message.filter(Boolean).map((m) => (m instanceof Node ? m : h('p', { text: m }))));
  $('#confirm-drain').hidden = !drain;
  rate.value = '';
  period.value = 'second';
  err.textContent = '';
  rate.removeAttribute('aria-invalid');
  okB.textContent = ok;
  okB.className = danger ? 'danger' : 'primary';
  const opener = document.activeElement;

  return new Promise((resolve) => {
    const finish = (result) => {
      dialogFinish = null;
      okB.removeEventListener('click', onOk);
      cancelB.removeEventListener('click', onCancel);
      dlg.removeEventListener('cancel', onEscape);
      rate.removeEventListener('keydown', onEnter);
      if (dlg.open) dlg.close();
      const back = (returnFocus && returnFocus()) || (opener?.isConnected ? opener : null);
      if (back) back.focus(); else focusHeading();
      resolve(result);
    };
    const onOk = () => {
      if (!drain || rate.value.trim() === '') { finish({ drain: null }); return; }
      const n = Number(rate.value);
      if (!Number.isInteger(n) || n < 1) {
        err.textContent = 'The drain rate must be a whole number of at least 1, or empty.';
        rate.setAttribute('aria-invalid', 'true');
        rate.focus();
        return;
      }
      finish({ drain: { drain_rate: n, drain_rate_period: period.value } });
    };
    const onCancel = () => finish(null);
    const onEscape = (e) => { e.preventDefault(); finish(null); };
    const onEnter = (e) => { if (e.key === 'Enter') { e.preventDefault(); onOk(); } };
    okB.addEventListener('click', onOk);
    cancelB.addEventListener('click', onCancel);
    dlg.addEventListener('cancel', onEscape);
    rate.addEventListener('keydown', onEnter);
    dialogFinish = finish;
    dlg.showModal();
    // Destructive choices start on Cancel; the drain field is where an unpause needs a thought.
    (drain ? rate : danger ? cancelB : okB).focus();
  });
}

function cancelDialog() { if (dialogFinish) dialogFinish(null); }

// Runs an action, reports its error, and answers whether it worked.
async function attempt(fn) {
  try { await fn(); return true; } catch (e) { showError(e); return false; }
}

// ---------------------------------------------------------------- engine banner

let enginePoller = null;
let engineState = null;

async function loadEngine() {
  engineState = await api('/v1/engine');
  renderEngineControls();
}

function renderEngineControls() {
  const paused = Boolean(engineState?.paused);
  const admin = Boolean(creds.admin) && creds.signedIn();
  $('#engine-banner').hidden = !paused || !creds.signedIn();
  $('#engine-resume').hidden = !admin;
  $('#engine-pause').hidden = !admin || paused || !engineState;
  $('#engine-banner-config').hidden = engineState?.changed_by !== 'config';
  const since = $('#engine-banner-since');
  since.replaceChildren();
  if (paused && engineState.paused_at) {
    since.append('Paused since ', timeEl(engineState.paused_at), ` (by ${engineState.changed_by || 'api'}).`);
  }
  $('#whoami').textContent = creds.signedIn() ? `Team ${creds.team}${creds.admin ? ' · admin key set' : ''}` : '';
}

async function engineAction(pause) {
  const ok = await confirmDialog(pause ? {
    title: 'Pause the whole engine?',
    message: [
      'No delivery attempt will start anywhere: every destination of every team on this gateway stops sending.',
      'Ingress keeps accepting and storing requests; events keep their status and wait. Nothing is dropped.',
      'To stop a single receiver, pause its connection instead.',
    ],
    ok: 'Pause engine', danger: true,
  } : {
    title: 'Resume the engine?',
    message: [
      'Deliveries restart at once for every destination. Waiting events go out in order, through each destination\'s rate limit and circuit breaker.',
      'Paused connections stay paused: their events stay HOLD until each is unpaused.',
    ],
    ok: 'Resume engine',
  });
  if (!ok) return;
  if (await attempt(async () => {
    engineState = await api(`/admin/engine/${pause ? 'pause' : 'resume'}`, { method: 'PUT', admin: true });
    renderEngineControls();
  })) notice(pause ? 'The engine is paused: no deliveries anywhere.' : 'The engine is delivering again.');
}

// ---------------------------------------------------------------- connections page

const liveHeld = [];   // [{t, held}] observed on each poll, for the "held now" line

function connectionState(c) {
  if (c.disabled_at) return 'Disabled';
  if (c.paused_at) return 'Paused';
  return 'Active';
}

function connectionActions(c) {
  const state = connectionState(c);
  if (state === 'Disabled') return [['enable', 'Enable'], ['delete', 'Delete', true]];
  if (state === 'Paused') return [['unpause', 'Unpause'], ['disable', 'Disable'], ['delete', 'Delete', true]];
  return [['pause', 'Pause'], ['disable', 'Disable'], ['delete', 'Delete', true]];
}

function pageConnections(view, ctx) {
  const { wrap, tbody } = table('connections', 'Connections', [
    'Name', 'Source → destination', 'State', ['Held', 'num'], ['Failed', 'num'], 'Actions',
  ]);
  const current = new Map();
  let pollTable = null;
  const pager = makePager(() => pollTable.tick(true));
  const chart = svg('svg', {
    id: 'backlog-chart', viewBox: '0 0 760 220', role: 'img', 'aria-label': 'Backlog chart: loading',
    preserveAspectRatio: 'xMidYMid meet',
  });
  const legend = h('ul', { class: 'legend', 'aria-label': 'Legend: totals over the last 60 minutes' });
  const heldNow = h('p', { id: 'held-total', class: 'hint' });

  view.append(
    pageHead('Connections', h('p', { class: 'hint', text: 'Live: refreshed every 2 s. Pause holds new events (HOLD) for later delivery; disable stops routing without a backlog.' })),
    wrap,
    pager.el,
    h('section', { class: 'panel', 'aria-labelledby': 'backlog-title' },
      h('h2', { id: 'backlog-title', text: 'Backlog, last 60 minutes' }),
      h('p', { class: 'hint', text: 'Events created each minute, counted by their status now (HOLD, QUEUED, FAILED). Refreshed every 10 s.' }),
      h('div', { class: 'chart-panel' }, chart, h('div', null, legend, heldNow))),
  );

  async function onAction(id, action) {
    const c = current.get(id);
    if (c) await connectionAction(c, action, () => pollTable.tick(true));
  }

  pollTable = ctx.poll(async () => {
    const [list] = await Promise.all([
      api('/v1/connections', { query: qs({ limit: PAGE_LIMIT, next: pager.cursor() }) }),
      refreshNames(),
    ]);
    if (!ctx.alive()) return;
    current.clear();
    for (const c of list.models) { current.set(c.id, c); names.connections.set(c.id, c); }
    syncRows(tbody, list.models, {
      attr: 'data-connection-id',
      colspan: 6,
      empty: 'No connections yet. Create one with POST /v1/connections to route a source to a destination.',
      sig: (c) => JSON.stringify([c.name, c.paused_at, c.disabled_at, c.held_count, c.failed_count,
        sourceName(c.source_id), destinationName(c.destination_id)]),
      cells: (c) => {
        const state = connectionState(c);
        const since = state === 'Paused' ? c.paused_at : state === 'Disabled' ? c.disabled_at : null;
        const held = c.held_count ?? 0;
        return [
          h('td', { title: c.id, text: c.name }),
          h('td', null, sourceName(c.source_id), ' → ', destinationLink(c.destination_id)),
          h('td', null, h('span', { class: `state-badge ${STATUS_CLASS[state]}`, text: state }),
            since ? h('span', { class: 'state-since' }, 'since ', timeEl(since)) : null),
          h('td', { class: 'held-count' }, held > 0
            ? h('a', { href: `#/events?connection_id=${enc(c.id)}&status=HOLD`, title: `Show the ${held} held events`, 'data-fk': 'held', text: String(held) })
            : '0'),
          h('td', { class: 'failed-count' }, (c.failed_count ?? 0) > 0
            ? h('a', { href: `#/events?connection_id=${enc(c.id)}&status=FAILED`, title: 'Show the failed events', 'data-fk': 'failed', text: String(c.failed_count) })
            : String(c.failed_count ?? 0)),
          h('td', null, actionsMenu(`Actions for ${c.name}`, connectionActions(c), (a) => onAction(c.id, a))),
        ];
      },
    });
    pager.update(list.pagination, list.count);
    const total = list.models.reduce((n, c) => n + (c.held_count ?? 0), 0);
    liveHeld.push({ t: Date.now(), held: total });
    while (liveHeld.length && liveHeld[0].t < Date.now() - 3600_000) liveHeld.shift();
    const minuteAgo = [...liveHeld].reverse().find((p) => p.t <= Date.now() - 55_000);
    heldNow.textContent = `Held now on the connections listed: ${total}` +
      (minuteAgo ? ` (a minute ago: ${minuteAgo.held}).` : '.');
  }, POLL_DETAIL_MS);

  ctx.poll(async () => {
    const to = new Date(serverNow());
    const from = new Date(to.getTime() - 60 * 60_000);
    const m = await api('/v1/metrics/events', {
      query: qs({
        from: from.toISOString(), to: to.toISOString(), granularity: '1m',
        'measures[]': ['hold_count', 'queued_count', 'failed_count'],
      }),
    });
    if (ctx.alive()) renderChart(chart, legend, m.data || []);
  }, POLL_SLOW_MS);
}

const SERIES = [
  { key: 'hold_count', label: 'HOLD', cls: 's-hold', help: 'held, connection paused' },
  { key: 'queued_count', label: 'QUEUED', cls: 's-queued', help: 'waiting for the destination' },
  { key: 'failed_count', label: 'FAILED', cls: 's-failed', help: 'out of retries' },
];

function renderChart(el, legend, buckets) {
  const W = 760; const H = 220; const L = 46; const R = 12; const T = 12; const B = 28;
  const n = buckets.length;
  const val = (b, k) => Number(b.metrics?.[k]) || 0;
  const totals = SERIES.map((s) => buckets.reduce((sum, b) => sum + val(b, s.key), 0));
  const peak = Math.max(1, ...buckets.flatMap((b) => SERIES.map((s) => val(b, s.key))));
  const step = 10 ** Math.floor(Math.log10(peak));
  const max = Math.ceil(peak / step) * step;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const summary = `Events created per minute over the last 60 minutes, by their status now: ${SERIES.map((s, i) => `${totals[i]} ${s.label}`).join(', ')}.`;

  const kids = [svg('title', null, summary)];
  for (const v of [0, max / 2, max]) {
    kids.push(svg('line', { class: v ? 'chart-grid' : 'chart-axis', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    kids.push(svg('text', { class: 'chart-label', x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(Math.round(v * 10) / 10)));
  }
  if (n) {
    for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
      const t = new Date(buckets[i].time_bucket);
      kids.push(svg('text', { class: 'chart-label', x: x(i), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle' },
        Number.isNaN(t.getTime()) ? '' : clockFmt.format(t)));
    }
    for (const s of SERIES) {
      const pts = buckets.map((b, i) => `${x(i).toFixed(1)},${y(val(b, s.key)).toFixed(1)}`).join(' ');
      kids.push(svg('polyline', { class: `chart-line ${s.cls}`, points: pts }));
    }
  } else {
    kids.push(svg('text', { class: 'chart-label', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'No data'));
  }
  el.replaceChildren(...kids);
  el.setAttribute('aria-label', summary);
  legend.replaceChildren(...SERIES.map((s, i) => h('li', null,
    h('span', { class: `swatch ${s.cls}`, 'aria-hidden': 'true' }),
    h('span', null, h('strong', { text: s.label }), ` (${s.help})`),
    h('span', { class: 'val', text: String(totals[i]) }))));
}

// The wording answers the guide's "common mistakes": pause keeps (never drops), disable does
// not build a backlog, unpause drains at the destination's rate unless told slower.
async function connectionAction(c, action, refresh, retried = false) {
  const held = c.held_count ?? 0;
  const dest = names.destinations.get(c.destination_id);
  const route = `${sourceName(c.source_id)} → ${destinationName(c.destination_id)}`;
  const destRate = dest ? rateText(dest.rate_limit, dest.rate_limit_period) : 'its configured rate limit';
  const focusBack = () => $(`tr[data-connection-id="${CSS.escape(c.id)}"] .actions-button`);
  const heldLine = held > 0 ? `It has ${plural(held, 'held event')} (HOLD) now.` : null;
  let spec;
  let run;
  let done;
  if (action === 'pause') {
    spec = {
      title: `Pause “${c.name}”?`,
      message: [
        `New events routed to this connection (${route}) will be held (HOLD) and not delivered until you unpause it; nothing is dropped.`,
        'The source keeps accepting provider requests, and the other connections of the same source keep delivering.',
        'Pausing every branch is not needed when only one receiver is failing; to stop this branch without building a backlog, disable it instead.',
      ],
      ok: 'Pause connection',
    };
    run = () => api(`/v1/connections/${enc(c.id)}/pause`, { method: 'PUT' });
    done = `“${c.name}” is paused: new events are held.`;
  } else if (action === 'unpause') {
    spec = {
      title: `Unpause “${c.name}”?`,
      message: [
        `${plural(held, 'held event')} will be delivered in order (trigger UNPAUSE), through the destination's rate limit (${destRate}), its circuit breaker and the retry rules.`,
        held > 0 && (!dest || dest.rate_limit == null || held > 100)
          ? h('p', { class: 'warn', text: dest && dest.rate_limit == null
            ? 'The destination has no rate limit: without a drain rate the held events go out as fast as the receiver answers. Check it is healthy, and set a drain rate below.'
            : `That is a large backlog: check the receiver is healthy, and set a drain rate below to release it slower than ${destRate}.` })
          : null,
      ],
      ok: held > 0 ? `Unpause and deliver ${plural(held, 'held event')}` : 'Unpause connection',
      drain: true,
    };
    run = (r) => api(`/v1/connections/${enc(c.id)}/unpause`, { method: 'PUT', body: r.drain || undefined });
    done = `“${c.name}” is unpaused${held ? `: ${plural(held, 'held event')} draining` : ''}.`;
  } else if (action === 'disable') {
    spec = {
      title: `Disable “${c.name}”?`,
      message: [
        `No new events will be created for this connection: ingress skips it (${route}) and builds no backlog.`,
        held > 0 ? `Its ${plural(held, 'held event')} stay HOLD (not dropped, not delivered) while it is disabled; enabling it releases them.` : null,
        c.paused_at ? 'Disabling clears the pause (paused_at).' : null,
        'If you meant to keep new events and deliver them later, pause instead.',
      ],
      ok: 'Disable connection',
      danger: true,
    };
    run = () => api(`/v1/connections/${enc(c.id)}/disable`, { method: 'PUT' });
    done = `“${c.name}” is disabled: new requests skip it.`;
  } else if (action === 'enable') {
    spec = {
      title: `Enable “${c.name}”?`,
      message: [
        `New events will be routed to this connection (${route}) and delivered again.`,
        held > 0 ? `Its ${plural(held, 'held event')} will be released in order as soon as it is enabled, through the destination's rate limit (${destRate}). Set a drain rate to release them slower.` : null,
      ],
      ok: 'Enable connection',
      drain: held > 0,
    };
    run = async (r) => {
      const out = await api(`/v1/connections/${enc(c.id)}/enable`, { method: 'PUT' });
      // Enabling starts the drain; an unpause with a rate replaces the rate of that drain.
      return r.drain ? api(`/v1/connections/${enc(c.id)}/unpause`, { method: 'PUT', body: r.drain }) : out;
    };
    done = `“${c.name}” is enabled.`;
  } else if (action === 'delete') {
    spec = held > 0 ? {
      title: `Delete “${c.name}” and cancel its held events?`,
      message: [
        heldLine,
        `Deleting it cancels them (CANCELLED): they will never be delivered. To deliver them, cancel here, unpause the connection, and delete it once they have drained.`,
        'Its failed events can no longer be retried after the delete. This cannot be undone.',
      ],
      ok: `Delete and cancel ${plural(held, 'held event')}`,
      danger: true,
    } : {
      title: `Delete “${c.name}”?`,
      message: [
        `The source stops routing to this destination (${route}). Events already handed to the destination are not affected; its failed events can no longer be retried.`,
        'This cannot be undone.',
      ],
      ok: 'Delete connection',
      danger: true,
    };
    run = () => api(`/v1/connections/${enc(c.id)}`, { method: 'DELETE', query: held > 0 ? qs({ cancel_events: 'true' }) : null });
    done = `“${c.name}” is deleted${held ? ` and its ${plural(held, 'held event')} cancelled` : ''}.`;
  } else {
    return;
  }
  const answer = await confirmDialog({ ...spec, returnFocus: focusBack });
  if (!answer) return;
  try {
    const out = await run(answer);
    if (action === 'delete') names.connections.delete(c.id);
    else if (out?.id) names.connections.set(out.id, out);
    notice(done);
  } catch (e) {
    // Events were held between the look and the delete: ask again with the new count.
    if (action === 'delete' && e.status === 409 && !retried) {
      const fresh = await api(`/v1/connections/${enc(c.id)}`).catch(() => null);
      if (fresh && (fresh.held_count ?? 0) > 0) { await connectionAction(fresh, action, refresh, true); return; }
    }
    showError(e);
  }
  refresh();
}

// ---------------------------------------------------------------- destinations

function pageDestinations(view, ctx) {
  const { wrap, tbody } = table('destinations', 'Destinations', ['Name', 'URL', 'Rate limit', 'State']);
  let poller = null;
  const pager = makePager(() => poller.tick(true));
  view.append(pageHead('Destinations', h('p', { class: 'hint', text: 'Open a destination for its circuit breaker and recent attempts.' })), wrap, pager.el);
  poller = ctx.poll(async () => {
    const list = await api('/v1/destinations', { query: qs({ limit: PAGE_LIMIT, next: pager.cursor() }) });
    if (!ctx.alive()) return;
    list.models.forEach((d) => names.destinations.set(d.id, d));
    syncRows(tbody, list.models, {
      attr: 'data-destination-id',
      colspan: 4,
      empty: 'No destinations yet. Create one with POST /v1/destinations.',
      sig: (d) => JSON.stringify([d.name, d.url, d.rate_limit, d.rate_limit_period, d.disabled_at]),
      cells: (d) => [
        h('td', null, h('a', { href: `#/destinations/${enc(d.id)}`, title: d.id, 'data-fk': 'name', text: d.name })),
        h('td', { class: 'url mono', text: d.url }),
        h('td', { class: 'nowrap', text: rateText(d.rate_limit, d.rate_limit_period) }),
        h('td', null, d.disabled_at
          ? [h('span', { class: 'state-badge b-idle', text: 'Disabled' }), h('span', { class: 'state-since' }, 'since ', timeEl(d.disabled_at))]
          : h('span', { class: 'state-badge b-ok', text: 'Enabled' })),
      ],
    });
    pager.update(list.pagination, list.count);
  }, POLL_SLOW_MS);
}

function pageDestination(view, ctx, id) {
  const title = h('h1', { tabindex: '-1', text: 'Destination' });
  const url = h('dd', { class: 'mono' });
  const enabled = h('dd');
  const rate = h('dd', { id: 'rate-limit' });
  const state = h('span', { id: 'circuit-state', class: 'badge' });
  const failures = h('span', { id: 'failure-count', class: 'big-number' });
  const nextProbe = h('span', { id: 'next-probe' });
  const queued = h('span', { id: 'queued-count', class: 'big-number' });
  const lastTransition = h('dd');
  const settings = h('dd');
  const resetB = h('button', { type: 'button', id: 'reset-circuit', class: 'primary' }, 'Reset circuit');
  const { wrap, tbody } = table('recent-attempts', 'Recent events of this destination and their last attempt',
    ['Event', 'Connection', 'Status', ['Attempts', 'num'], 'Response', 'Error code', 'Last attempt']);
  let dest = null;
  let circuit = null;
  let ticks = 0;

  document.title = 'Destination · FastHook console';
  view.append(
    h('div', { class: 'page-head' }, title, h('a', { href: '#/destinations' }, '← All destinations')),
    h('div', { class: 'cols' },
      h('section', { class: 'panel', 'aria-labelledby': 'dest-h' },
        h('h2', { id: 'dest-h', text: 'Receiver' }),
        h('dl', { class: 'fields' },
          h('dt', null, 'Id'), h('dd', { class: 'mono', text: id }),
          h('dt', null, 'URL'), url,
          h('dt', null, 'Rate limit'), rate,
          h('dt', null, 'State'), enabled)),
      h('section', { class: 'panel', 'aria-labelledby': 'circuit-h' },
        h('h2', { id: 'circuit-h', text: 'Circuit breaker' }),
        h('dl', { class: 'fields' },
          h('dt', null, 'State'), h('dd', null, state),
          h('dt', null, 'Consecutive failures'), h('dd', null, failures),
          h('dt', null, 'Next probe'), h('dd', null, nextProbe),
          h('dt', null, 'Queued events'), h('dd', null, queued),
          h('dt', null, 'Last transition'), lastTransition,
          h('dt', null, 'Settings'), settings),
        h('p', { class: 'hint', text: 'Open: no attempt starts and events wait QUEUED, nothing is dropped. After the cooldown it goes half_open and sends one probe (trigger PROBE) with the oldest waiting event.' }),
        resetB)),
    h('section', { 'aria-labelledby': 'recent-h' },
      h('h2', { id: 'recent-h' }, 'Recent events and their last attempt'),
      h('p', { class: 'hint' }, 'The 10 newest events of this destination. ',
        h('a', { href: `#/events?destination_id=${enc(id)}` }, 'All events of this destination')),
      wrap),
  );

  const renderProbe = () => {
    if (circuit?.state === 'open' && circuit.next_probe_at) {
      const s = Math.ceil((Date.parse(circuit.next_probe_at) - serverNow()) / 1000);
      nextProbe.textContent = s > 0 ? `in ${duration(s)}` : 'due now';
      nextProbe.title = circuit.next_probe_at;
    } else {
      nextProbe.textContent = '—';
      nextProbe.removeAttribute('title');
    }
  };

  const renderCircuit = (c) => {
    circuit = c;
    state.textContent = c.state;
    state.className = `badge state-${c.state}`;
    // Opening zeroes the counter (the probe decides what comes next), so while it is open
    // the useful figure is what tripped it, not a misleading "0 of N".
    failures.textContent = c.state === 'closed'
      ? `${c.failure_count} of ${c.failure_threshold}`
      : `tripped after ${c.failure_threshold} in a row`;
    queued.textContent = String(c.queued_count);
    lastTransition.replaceChildren(timeEl(c.last_transition_at));
    settings.textContent = `opens after ${c.failure_threshold} failures, probes after ${duration(c.cooldown_seconds)}, closes after ${c.success_threshold} successful probe${c.success_threshold === 1 ? '' : 's'}`;
    renderProbe();
  };

  const renderDest = (d) => {
    dest = d;
    names.destinations.set(d.id, d);
    title.textContent = d.name;
    document.title = `${d.name} · FastHook console`;
    url.textContent = `${d.http_method || 'POST'} ${d.url}`;
    rate.textContent = rateText(d.rate_limit, d.rate_limit_period);
    enabled.replaceChildren(d.disabled_at
      ? h('span', null, h('span', { class: 'state-badge b-idle', text: 'Disabled' }), ' — no attempts; what it queued waits')
      : h('span', { class: 'state-badge b-ok', text: 'Enabled' }));
  };

  resetB.addEventListener('click', async () => {
    const c = circuit;
    const answer = await confirmDialog({
      title: `Reset the circuit of “${dest?.name || id}”?`,
      message: [
        `This closes the breaker now (it is ${c ? c.state : 'unknown'}) and zeroes the failure count${c ? ` (now ${c.failure_count})` : ''}.`,
        `${c ? plural(c.queued_count, 'queued event') : 'The queued events'} will be flushed in order (trigger RESET), through the rate limit (${dest ? rateText(dest.rate_limit, dest.rate_limit_period) : 'as configured'}).`,
        `If the receiver is still failing, the breaker opens again after ${c ? c.failure_threshold : 'the threshold of'} failures.`,
      ],
      ok: 'Reset circuit',
    });
    if (!answer) return;
    if (await attempt(async () => renderCircuit(await api(`/v1/destinations/${enc(id)}/circuit/reset`, { method: 'POST' })))) {
      notice('The circuit is closed; the queue is flushing.');
    }
    poller.tick(true);
  });

  const poller = ctx.poll(async () => {
    // The destination's settings change rarely: every 5th tick; the breaker every tick.
    const wantDest = !dest || ticks++ % 5 === 0;
    const [d, c, evs] = await Promise.all([
      wantDest ? api(`/v1/destinations/${enc(id)}`) : null,
      api(`/v1/destinations/${enc(id)}/circuit`),
      api('/v1/events', { query: qs({ destination_id: id, limit: 10 }) }),
      refreshNames(),
    ]);
    if (!ctx.alive()) return;
    if (d) renderDest(d);
    renderCircuit(c);
    syncRows(tbody, evs.models, {
      attr: 'data-event-id',
      colspan: 7,
      empty: 'No events for this destination yet.',
      sig: (e) => JSON.stringify([e.status, e.attempts, e.response_status, e.error_code, e.last_attempt_at, connectionName(e.connection_id)]),
      cells: (e) => [
        h('td', null, h('a', { href: `#/events/${enc(e.id)}`, class: 'mono', 'data-fk': 'id', text: e.id })),
        h('td', { text: connectionName(e.connection_id) }),
        h('td', { class: 'event-status' }, badge(e.status)),
        h('td', { class: 'num', text: String(e.attempts) }),
        h('td', { text: dash(e.response_status) }),
        h('td', { class: 'mono', text: dash(e.error_code) }),
        h('td', null, timeEl(e.last_attempt_at)),
      ],
    });
  }, POLL_DETAIL_MS);

  ctx.every(renderProbe, 1000);
}

// ---------------------------------------------------------------- events list

let bulkJobId = null;   // survives a route change so the progress shows again on return

function retryNote(status) {
  if (status === 'HOLD') return 'held — unpause its connection';
  if (status === 'QUEUED' || status === 'SCHEDULED') return 'waiting for an attempt';
  return null;
}

async function retryEvent(id, refresh) {
  if (await attempt(async () => {
    const ev = await api(`/v1/events/${enc(id)}/retry`, { method: 'POST' });
    notice(ev?.status === 'HOLD'
      ? `${id} is now HOLD: its connection is paused or disabled, so the retry waits for it to be unpaused.`
      : `Retry of ${id} started (MANUAL attempt); it is ${ev?.status || 'queued'} now.`);
  })) refresh();
}

function retryHelp() {
  return h('div', { class: 'help', id: 'retry-rules' },
    h('strong', null, 'Retries and HOLD'),
    h('ul', null,
      h('li', null, 'A retry makes a MANUAL attempt now, and takes a dead-lettered event out of the dead-letter queue.'),
      h('li', null, 'Retrying an event whose connection is paused makes it HOLD: it waits for the unpause instead of being delivered.'),
      h('li', null, 'A HOLD event cannot be retried (409 EVENT_ON_HOLD): unpause its connection to release it.'),
      h('li', null, 'QUEUED and SCHEDULED events are already waiting for an attempt.')));
}

function pageEvents(view, ctx, query) {
  const f = {
    connection: query.get('connection_id') || '',
    destination: query.get('destination_id') || '',
    statuses: query.getAll('status'),
    dead: query.get('dead_lettered') === 'true',
    gte: query.get('created_at[gte]') || '',
    lte: query.get('created_at[lte]') || '',
  };
  const connSel = h('select', { id: 'filter-connection', name: 'connection' });
  const destSel = h('select', { id: 'filter-destination', name: 'destination' });
  const from = h('input', { id: 'filter-from', type: 'datetime-local', step: '1', value: isoToLocalInput(f.gte) });
  const to = h('input', { id: 'filter-to', type: 'datetime-local', step: '1', value: isoToLocalInput(f.lte) });
  const dead = h('input', { id: 'filter-dead-lettered', type: 'checkbox', checked: f.dead });
  const checks = EVENT_STATUSES.map((s) => h('label', null,
    h('input', { type: 'checkbox', name: 'filter-status', value: s, checked: f.statuses.includes(s) }), s));
  const form = h('form', { class: 'panel filters', id: 'event-filters', 'aria-label': 'Event filters', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'filter-connection' }, 'Connection'), connSel),
    h('div', { class: 'field' }, h('label', { for: 'filter-destination' }, 'Destination'), destSel),
    h('fieldset', null, h('legend', null, 'Status'), h('div', { class: 'checks' }, checks)),
    h('div', { class: 'field' }, h('label', { for: 'filter-from' }, 'Created from'), from),
    h('div', { class: 'field' }, h('label', { for: 'filter-to' }, 'Created to'), to),
    h('label', { class: 'check' }, dead, 'Dead-lettered only'),
    h('div', { class: 'filters-buttons' },
      h('button', { type: 'submit', id: 'apply-filters', class: 'primary' }, 'Apply filters'),
      h('a', { href: '#/events', class: 'nowrap' }, 'Clear')));

  const { wrap, tbody } = table('events', 'Events', ['Event', 'Connection', 'Destination', 'Status', ['Attempts', 'num'], 'Response / error', 'Created', 'Retry']);
  let poller = null;
  const pager = makePager(() => poller.tick(true));
  const bulkB = h('button', { type: 'button', id: 'bulk-retry' }, 'Retry all matching');
  const progress = h('div', { id: 'bulk-progress', 'aria-live': 'polite' });

  view.append(
    pageHead('Events', h('p', { class: 'hint', text: 'Every routed copy of a request. Refreshed every 5 s.' })),
    form,
    h('div', { class: 'cols' },
      retryHelp(),
      h('div', { class: 'help' },
        h('strong', null, 'Retry all matching'),
        h('p', null, 'Retries every event the filters above select (connection, destination, statuses, time range), in the background. HOLD events are never selected: unpause their connection instead. Events of a paused connection go to HOLD rather than being delivered, so unpause first. With no status ticked, FAILED events are selected; the dead-letter filter is not part of a bulk retry.'),
        bulkB, progress)),
    wrap,
    pager.el,
  );

  // Rebuilt only when the cached names change, never under the user's hand, keeping the choice.
  const fill = (sel, map, anyLabel, initial) => {
    if (document.activeElement === sel) return;
    const chosen = sel.dataset.touched ? sel.value : initial;
    const opts = [...map.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (chosen && !map.has(chosen)) opts.unshift({ id: chosen, name: chosen });
    const key = JSON.stringify(opts.map((o) => [o.id, o.name]));
    if (sel.dataset.key === key) return;
    sel.dataset.key = key;
    sel.replaceChildren(h('option', { value: '' }, anyLabel), ...opts.map((o) => h('option', { value: o.id }, o.name)));
    sel.value = chosen;
  };
  const fillSelects = () => {
    fill(connSel, names.connections, 'Any connection', f.connection);
    fill(destSel, names.destinations, 'Any destination', f.destination);
  };
  for (const sel of [connSel, destSel]) sel.addEventListener('change', () => { sel.dataset.touched = '1'; });
  fillSelects();

  const readForm = () => ({
    connection_id: connSel.value,
    destination_id: destSel.value,
    status: checks.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value),
    dead_lettered: dead.checked ? 'true' : '',
    'created_at[gte]': localInputToIso(from.value) || '',
    'created_at[lte]': localInputToIso(to.value, true) || '',
  });

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = qs(readForm()).toString();
    const hash = `#/events${q ? `?${q}` : ''}`;
    if (hash === location.hash) poller.tick(true);
    else location.hash = hash;
  });

  bulkB.addEventListener('click', () => startBulkRetry(readForm(), progress, ctx));
  if (bulkJobId) watchBulk(bulkJobId, progress, ctx);

  poller = ctx.poll(async () => {
    const [list] = await Promise.all([
      api('/v1/events', {
        query: qs({
          connection_id: f.connection, destination_id: f.destination, status: f.statuses,
          'created_at[gte]': f.gte, 'created_at[lte]': f.lte,
          dead_lettered: f.dead ? 'true' : null, limit: PAGE_LIMIT, next: pager.cursor(),
        }),
      }),
      refreshNames(),
    ]);
    if (!ctx.alive()) return;
    fillSelects();
    syncRows(tbody, list.models, {
      attr: 'data-event-id',
      colspan: 8,
      empty: 'No events match these filters.',
      sig: (e) => JSON.stringify([e.status, e.attempts, e.response_status, e.error_code, e.dead_lettered_at,
        connectionName(e.connection_id), destinationName(e.destination_id)]),
      cells: (e) => {
        const note = retryNote(e.status);
        return [
          h('td', null, h('a', { href: `#/events/${enc(e.id)}`, class: 'mono', 'data-fk': 'id', text: e.id })),
          h('td', { text: connectionName(e.connection_id) }),
          h('td', null, destinationLink(e.destination_id)),
          h('td', { class: 'event-status' }, badge(e.status)),
          h('td', { class: 'num', text: String(e.attempts) }),
          h('td', { class: 'nowrap' }, [e.response_status, e.error_code].filter((x) => x != null).join(' · ') || '—',
            e.dead_lettered_at ? h('span', { class: 'sub', text: 'dead-lettered' }) : null),
          h('td', { class: 'nowrap' }, timeEl(e.created_at)),
          h('td', null, note
            ? h('span', { class: 'muted', text: note })
            : h('button', { type: 'button', class: 'retry-event small', 'data-fk': 'retry', 'aria-label': `Retry ${e.id}`, onclick: () => retryEvent(e.id, () => poller.tick(true)) }, 'Retry')),
        ];
      },
    });
    pager.update(list.pagination, list.count);
  }, POLL_LIST_MS);
}

async function startBulkRetry(filters, progress, ctx) {
  let statuses = filters.status.filter((s) => s !== 'HOLD');
  const droppedHold = filters.status.includes('HOLD');
  if (droppedHold && !statuses.length) {
    showError(new ApiError(0, 'NOTHING_TO_RETRY', 'Only HOLD is ticked, and HOLD events are never retried: unpause their connection to release them.'));
    return;
  }
  if (!statuses.length) statuses = ['FAILED'];
  const conn = filters.connection_id ? names.connections.get(filters.connection_id) : null;
  const pausedCount = [...names.connections.values()].filter((c) => c.paused_at || c.disabled_at).length;
  const answer = await confirmDialog({
    title: 'Retry all matching events?',
    message: [
      `Selects ${statuses.join(', ')} events of ${conn ? `connection “${conn.name}”` : filters.connection_id || 'any connection'} and ${filters.destination_id ? `destination “${destinationName(filters.destination_id)}”` : 'any destination'}` +
        `${filters['created_at[gte]'] ? `, created from ${new Date(filters['created_at[gte]']).toLocaleString()}` : ''}` +
        `${filters['created_at[lte]'] ? `, created up to ${new Date(filters['created_at[lte]']).toLocaleString()}` : ''}.`,
      droppedHold ? 'HOLD is left out: held events are never selected by a retry; unpausing releases them.' : null,
      statuses.includes('SUCCESSFUL') ? h('p', { class: 'warn', text: 'SUCCESSFUL is ticked: events already delivered will be sent again.' }) : null,
      conn && (conn.paused_at || conn.disabled_at)
        ? h('p', { class: 'warn', text: `“${conn.name}” is ${conn.disabled_at ? 'disabled' : 'paused'}: its retried events will go to HOLD, not be delivered. Unpause it first.` })
        : (!conn && pausedCount ? `${plural(pausedCount, 'connection')} ${pausedCount === 1 ? 'is' : 'are'} paused or disabled: their retried events will go to HOLD.` : null),
      filters.dead_lettered ? 'The dead-letter filter is not part of a bulk retry: every matching FAILED event is retried, dead-lettered or not.' : null,
    ],
    ok: 'Start bulk retry',
  });
  if (!answer) return;
  const q = { status: statuses };
  if (filters.connection_id) q.connection_id = filters.connection_id;
  if (filters.destination_id) q.destination_id = filters.destination_id;
  if (filters['created_at[gte]'] || filters['created_at[lte]']) {
    q.created_at = {};
    if (filters['created_at[gte]']) q.created_at.gte = filters['created_at[gte]'];
    if (filters['created_at[lte]']) q.created_at.lte = filters['created_at[lte]'];
  }
  await attempt(async () => {
    const job = await api('/v1/bulk/events/retry', { method: 'POST', body: { query: q } });
    bulkJobId = job.id;
    notice(`Bulk retry ${job.id} started: about ${plural(job.estimated_count ?? 0, 'event')}.`);
    renderBulk(job, progress);
    watchBulk(job.id, progress, ctx);
  });
}

function watchBulk(id, progress, ctx) {
  const p = ctx.poll(async () => {
    const job = await api(`/v1/bulk/events/retry/${enc(id)}`);
    if (!ctx.alive()) return;
    renderBulk(job, progress);
    if (job.status !== 'RUNNING') { p.stop(); if (bulkJobId === id) bulkJobId = null; }
  }, 1000);
}

function renderBulk(job, progress) {
  const total = job.estimated_count ?? 0;
  const doneN = (job.retried_count ?? 0) + (job.skipped_count ?? 0);
  const running = job.status === 'RUNNING';
  const text = running
    ? `Bulk retry ${job.id}: ${doneN} of about ${total} dealt with (${job.retried_count ?? 0} retried, ${job.skipped_count ?? 0} skipped)…`
    : `Bulk retry ${job.id} finished: ${job.retried_count ?? 0} retried (held instead on paused connections), ${job.skipped_count ?? 0} skipped (already waiting, or their connection or destination gone).`;
  if (progress.dataset.text === text) return;
  progress.dataset.text = text;
  progress.replaceChildren();
  if (running) progress.append(h('progress', { max: String(Math.max(total, 1)), value: String(Math.min(doneN, Math.max(total, 1))), 'aria-label': 'Bulk retry progress' }));
  progress.append(h('p', { text }));
}

// ---------------------------------------------------------------- event detail

function payloadText(data) {
  if (!data) return '(The request is no longer stored: its body was purged by retention.)';
  const head = Object.entries(data.headers || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
  let body;
  if (data.encoding === 'json') body = JSON.stringify(data.body, null, 2);
  else if (data.encoding === 'base64') body = `[binary body, base64]\n${data.body}`;
  else body = String(data.body ?? '');
  return `${head}\n\n${body}`;
}

function pageEvent(view, ctx, id) {
  const status = h('span', { id: 'event-status', class: 'badge' });
  const fields = h('dl', { class: 'fields' });
  const retryB = h('button', { type: 'button', id: 'retry-event', class: 'primary', 'aria-describedby': 'retry-event-help' }, 'Retry');
  const retryHelpP = h('p', { id: 'retry-event-help', class: 'hint' });
  const payload = h('pre', { id: 'event-payload', tabindex: '0', 'aria-label': 'Request headers and body' }, 'Loading…');
  const { wrap, tbody } = table('event-attempts', 'Attempts, newest first',
    [['#', 'num'], 'Trigger', 'Status', 'Response', 'Error code', ['Duration (ms)', 'num'], 'At']);
  let poller = null;
  let payloadShown = null;

  document.title = `Event ${id} · FastHook console`;
  view.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, 'Event ', h('span', { class: 'mono', text: id })), status,
      h('a', { href: '#/events' }, '← All events')),
    h('div', { class: 'cols' },
      h('section', { class: 'panel', 'aria-label': 'Event fields' }, fields),
      h('section', { class: 'panel', 'aria-label': 'Retry' }, retryB, retryHelpP, retryHelp())),
    h('section', { 'aria-labelledby': 'attempts-h' }, h('h2', { id: 'attempts-h', text: 'Attempts (newest first)' }), wrap),
    h('section', { class: 'panel', 'aria-labelledby': 'payload-h' }, h('h2', { id: 'payload-h', text: 'Request headers and body' }), payload),
  );

  retryB.addEventListener('click', () => retryEvent(id, () => poller.tick(true)));

  const row = (label, value) => [h('dt', { text: label }), h('dd', null, value)];

  poller = ctx.poll(async () => {
    const [ev, attempts] = await Promise.all([
      api(`/v1/events/${enc(id)}`),
      api('/v1/attempts', { query: qs({ event_id: id, limit: PAGE_LIMIT, dir: 'desc' }) }),
      refreshNames(),
    ]);
    if (!ctx.alive()) return;
    status.textContent = ev.status;
    status.className = `badge ${STATUS_CLASS[ev.status] || 'b-idle'}`;
    const connLink = h('a', { href: `#/events?connection_id=${enc(ev.connection_id)}` }, connectionName(ev.connection_id));
    fields.replaceChildren(
      ...row('Connection', connLink),
      ...row('Source', sourceName(ev.source_id)),
      ...row('Destination', destinationLink(ev.destination_id)),
      ...row('Request', h('span', { class: 'mono', text: ev.request_id })),
      ...row('Attempts', String(ev.attempts)),
      ...row('Response status', dash(ev.response_status)),
      ...row('Error code', dash(ev.error_code)),
      ...row('Last attempt', timeEl(ev.last_attempt_at)),
      ...row('Next attempt', timeEl(ev.next_attempt_at)),
      ...row('Dead-lettered', ev.dead_lettered_at ? timeEl(ev.dead_lettered_at) : 'no'),
      ...row('Created', timeEl(ev.created_at)),
      ...row('Updated', timeEl(ev.updated_at)),
    );
    const note = ev.status === 'HOLD'
      ? 'This event is held (HOLD): it cannot be retried. Unpause its connection to deliver it.'
      : ev.status === 'QUEUED' || ev.status === 'SCHEDULED'
        ? 'This event is already waiting for an attempt.'
        : `A retry makes a MANUAL attempt now${ev.dead_lettered_at ? ' and takes it out of the dead-letter queue' : ''}; if its connection is paused it goes to HOLD instead.`;
    const wasFocused = document.activeElement === retryB;
    retryB.disabled = Boolean(retryNote(ev.status));
    if (wasFocused && retryB.disabled) retryHelpP.setAttribute('tabindex', '-1');
    retryHelpP.textContent = note;
    if (wasFocused && retryB.disabled) retryHelpP.focus();
    syncRows(tbody, attempts.models, {
      attr: 'data-attempt-id',
      colspan: 7,
      empty: ev.status === 'HOLD' ? 'No attempts: the event is held until its connection is unpaused.' : 'No attempts yet.',
      sig: (a) => JSON.stringify([a.status, a.response_status, a.error_code, a.duration_ms]),
      cells: (a) => [
        h('td', { class: 'num', text: String(a.attempt_number) }),
        h('td', { text: a.trigger }),
        h('td', null, badge(a.status)),
        h('td', { text: dash(a.response_status) }),
        h('td', { class: 'mono', text: dash(a.error_code) }),
        h('td', { class: 'num', text: String(a.duration_ms) }),
        h('td', { class: 'nowrap' }, timeEl(a.created_at)),
      ],
    });
    // Replacing an unchanged payload would reset the reader's scroll and selection.
    const text = payloadText(ev.data);
    if (text !== payloadShown) { payload.textContent = text; payloadShown = text; }
  }, POLL_DETAIL_MS);
}

// ---------------------------------------------------------------- issues

let issuesFilter = 'OPENED';

function pageIssues(view, ctx) {
  const sel = h('select', { id: 'issues-status' },
    h('option', { value: 'OPENED' }, 'Opened'),
    h('option', { value: 'ACKNOWLEDGED' }, 'Acknowledged'),
    h('option', { value: 'all' }, 'All'));
  sel.value = issuesFilter;
  const { wrap, tbody } = table('issues', 'Issues', ['Type', 'Destination', 'Status', 'Opened', 'Last seen', 'Actions']);
  let poller = null;
  const pager = makePager(() => poller.tick(true));
  view.append(
    pageHead('Issues', h('p', { class: 'hint', text: 'A circuit_open issue opens when a destination\'s breaker opens and resolves itself when it closes. Acknowledge to say someone is on it; dismiss to close it without waiting.' })),
    h('div', { class: 'panel filters' }, h('div', { class: 'field' }, h('label', { for: 'issues-status' }, 'Status'), sel)),
    wrap,
    pager.el,
  );
  sel.addEventListener('change', () => { issuesFilter = sel.value; poller.tick(true); });

  const setStatus = async (issue, status) => {
    if (await attempt(() => api(`/v1/issues/${enc(issue.id)}`, { method: 'PUT', body: { status } }))) {
      notice(`Issue ${issue.id} ${status === 'ACKNOWLEDGED' ? 'acknowledged' : 'dismissed'}.`);
    }
    poller.tick(true);
  };

  poller = ctx.poll(async () => {
    const [list] = await Promise.all([
      api('/v1/issues', { query: qs({ status: issuesFilter === 'all' ? null : issuesFilter, limit: PAGE_LIMIT, next: pager.cursor() }) }),
      refreshNames(),
    ]);
    if (!ctx.alive()) return;
    syncRows(tbody, list.models, {
      attr: 'data-issue-id',
      colspan: 6,
      empty: issuesFilter === 'OPENED' ? 'No open issues: every circuit is closed or acknowledged.' : 'No issues.',
      sig: (i) => JSON.stringify([i.status, i.last_seen_at, i.resolved_at, destinationName(i.destination_id)]),
      cells: (i) => [
        h('td', { class: 'mono', text: i.type }),
        h('td', null, destinationLink(i.destination_id)),
        h('td', null, badge(i.status)),
        h('td', { class: 'nowrap' }, timeEl(i.opened_at)),
        h('td', { class: 'nowrap' }, timeEl(i.last_seen_at)),
        h('td', { class: 'nowrap' },
          i.status === 'OPENED' ? h('button', { type: 'button', class: 'small', 'data-action': 'ack', 'data-fk': 'ack', onclick: () => setStatus(i, 'ACKNOWLEDGED') }, 'Acknowledge') : null,
          i.status === 'OPENED' ? ' ' : null,
          i.status === 'OPENED' || i.status === 'ACKNOWLEDGED'
            ? h('button', { type: 'button', class: 'small', 'data-action': 'dismiss', 'data-fk': 'dismiss', onclick: () => setStatus(i, 'DISMISSED') }, 'Dismiss')
            : h('span', { class: 'muted', text: '—' })),
      ],
    });
    pager.update(list.pagination, list.count);
  }, POLL_LIST_MS);
}

// ---------------------------------------------------------------- router

const ROUTES = [
  [/^\/connections$/, (v, c) => pageConnections(v, c)],
  [/^\/destinations$/, (v, c) => pageDestinations(v, c)],
  [/^\/destinations\/([^/]+)$/, (v, c, m) => pageDestination(v, c, decodeURIComponent(m[1]))],
  [/^\/events$/, (v, c, m, q) => pageEvents(v, c, q)],
  [/^\/events\/([^/]+)$/, (v, c, m) => pageEvent(v, c, decodeURIComponent(m[1]))],
  [/^\/issues$/, (v, c) => pageIssues(v, c)],
];

let lastPath = null;
let pendingError = null;   // shown after the next route, which clears old messages

function route() {
  const raw = location.hash.slice(1);
  if (!raw.startsWith('/')) {
    // The skip link and other in-page anchors are not routes.
    if (raw === '' || lastPath === null) location.replace('#/connections');
    return;
  }
  if (!creds.signedIn()) { showLogin(); return; }
  showApp();
  const [path, search = ''] = raw.split('?');
  const query = new URLSearchParams(search);
  const keepId = path === lastPath ? document.activeElement?.id : null;
  stopPage();
  clearError();
  if (pendingError) { showError(pendingError); pendingError = null; }
  const view = $('#view');
  view.replaceChildren();
  const section = path.split('/')[1];
  for (const a of document.querySelectorAll('#main-nav a')) {
    if (a.getAttribute('href') === `#/${section}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const found = ROUTES.find(([re]) => re.test(path));
  if (found) {
    found[1](view, makeCtx(), path.match(found[0]), query);
  } else {
    view.append(pageHead('Not found'), h('p', null, 'No such page. ', h('a', { href: '#/connections' }, 'Go to connections')));
  }
  // Move focus for a new page only; a new query (the events filters) keeps the user's place.
  if (keepId && document.getElementById(keepId)) document.getElementById(keepId).focus();
  else if (lastPath !== null && lastPath !== path) focusHeading();
  lastPath = path;
}

// ---------------------------------------------------------------- sign in / out

function showLogin() {
  stopPage();
  enginePoller?.stop();
  enginePoller = null;
  engineState = null;
  $('#view').replaceChildren();
  $('#login').hidden = false;
  $('#main-nav').hidden = true;
  $('#header-tools').hidden = true;
  renderEngineControls();
  document.title = 'Sign in · FastHook console';
  const first = $('#login-team').value ? $('#login-key') : $('#login-team');
  first.focus();
}

function signOut(reason) {
  sessionStorage.clear();
  names.at = 0;
  names.sources.clear(); names.destinations.clear(); names.connections.clear();
  lastPath = null;
  showLogin();
  if (reason) showError(reason);
}

// Idempotent: the router calls it too, since a route may arrive while signing in.
function showApp() {
  $('#login').hidden = true;
  $('#main-nav').hidden = false;
  $('#header-tools').hidden = false;
  if (!enginePoller) enginePoller = new Poller(loadEngine, POLL_SLOW_MS).start();
  renderEngineControls();
}

function enterApp() {
  showApp();
  // A replaced hash routes through its hashchange.
  if (!location.hash.startsWith('#/')) location.replace('#/connections');
  else route();
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const team = $('#login-team').value.trim();
  const key = $('#login-key').value.trim();
  const admin = $('#login-admin-key').value.trim();
  if (!team || !key) {
    showError(new ApiError(0, 'MISSING_CREDENTIALS', 'Enter the team id and an API key of that team.'));
    (team ? $('#login-key') : $('#login-team')).focus();
    return;
  }
  clearError();
  sessionStorage.setItem(KEYS.team, team);
  sessionStorage.setItem(KEYS.key, key);
  if (admin) sessionStorage.setItem(KEYS.admin, admin);
  const submit = $('#login-submit');
  submit.disabled = true;
  try {
    await api('/v1/engine');   // cheap, and proves the key belongs to the team
  } catch (err) {
    if (!err.handled) {
      sessionStorage.clear();
      showError(err);
    }
    return;
  } finally {
    submit.disabled = false;
  }
  let adminProblem = null;
  if (admin) await api('/admin/engine', { admin: true }).catch((err) => { adminProblem = err; });
  $('#login-key').value = '';
  $('#login-admin-key').value = '';
  pendingError = adminProblem;
  enterApp();
});

$('#logout').addEventListener('click', () => signOut(null));
$('#engine-pause').addEventListener('click', () => engineAction(true));
$('#engine-resume').addEventListener('click', () => engineAction(false));
$('#skip-link').addEventListener('click', (e) => { e.preventDefault(); focusHeading(); });
window.addEventListener('hashchange', route);

if (creds.signedIn()) enterApp(); else showLogin();
