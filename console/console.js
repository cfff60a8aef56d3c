/* console.js — the agent console's behaviour: sign-in, the live stream,
 * the queue, one session, the callback queue and the supervisor's view.
 *
 * It speaks only the Agent API (docs/agents.md, gateway/agents/README.md),
 * with the token from this tab's sessionStorage as the bearer header: no
 * cookies, so nothing another site could ride on. The page is built with
 * DOM calls and textContent only (never innerHTML): what citizens type is
 * shown as text, and the strict CSP stays satisfied. Stream events are
 * small notifications; what they name is re-fetched through the API. */
'use strict';

const TOKEN_KEY = 'cardline.token';
const PAGE_SIZE = 50;             /* sessions per page of the queue */
const LIVE_LIMIT = 200;           /* sessions listed by "all live sessions" (the API's most) */
const REFRESH_DELAY_MS = 250;     /* a burst of events becomes one fetch */
const BACKOFF_FIRST_MS = 1000;    /* first wait before reconnecting the stream */
const BACKOFF_MAX_MS = 30000;     /* longest wait between reconnects */
const STREAM_BUFFER_MAX = 65536;  /* an event longer than this ends the stream */
const FIGURES_EVERY_MS = 5000;    /* the supervisor's figures move with every hop: re-read this often too */

/* The console's state: who is signed in and what is on screen. */
const state = {
    token: null,        /* the bearer token, also in sessionStorage */
    me: null,           /* GET /v1/me: {agent, role, queues} */
    offset: 0,          /* first session of the queue page shown */
    total: 0,           /* sessions matching the queue's filter */
    rows: [],           /* the queue page shown: [{since, cell}] for the ticking clock */
    open: null,         /* id of the session shown, or null */
    stream: null,       /* AbortController of the stream, or null */
    backoff: BACKOFF_FIRST_MS,
    dropped: false,     /* the stream ended: what it missed is re-read on reconnect */
    timers: {},         /* pending refreshes by name */
};

const $ = (id) => document.getElementById(id);

/* Small DOM helpers ---------------------------------------------------------*/

/* An element with text; `cls` is a class name or ''. */
function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
}

function button(label, onClick, cls) {
    const b = el('button', label, cls);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
}

function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
}

/* Says `text` in a message line; `good` colours it as success. */
function say(id, text, good) {
    const m = $(id);
    m.textContent = text || '';
    m.classList.toggle('good', !!good);
    delete m.dataset.read;
}

function canAct() {
    return state.me && (state.me.role === 'agent' || state.me.role === 'supervisor');
}

function isSupervisor() {
    return state.me && state.me.role === 'supervisor';
}

/* "3 min 05 s" from milliseconds. */
function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + String(s % 60).padStart(2, '0') + ' s';
    return Math.floor(m / 60) + ' h ' + String(m % 60).padStart(2, '0') + ' min';
}

function clock(ms) {
    return ms ? new Date(ms).toLocaleTimeString() : '';
}

/* The API -------------------------------------------------------------------*/

/* Words for an answer that carried no message of its own. */
function fallbackWords(status) {
    if (status === 401) return 'Your token was not accepted. Sign in again.';
    if (status === 403) return 'Your role may not do this.';
    if (status === 404) return 'Not found: it may have ended.';
    if (status === 409) return 'Someone or something else changed it first.';
    if (status === 503 || status === 504) return 'The gateway cannot reach its store just now. Try again.';
    return 'The gateway could not do this.';
}

/* Calls the API; resolves {ok, status, body, words}: `words` is the API's
 * own error message, or plain words when it gave none. */
async function api(method, path, body) {
    const init = { method, headers: { Authorization: 'Bearer ' + state.token }, cache: 'no-store' };
    if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    let res;
    try {
        res = await fetch(path, init);
    } catch (e) {
        return { ok: false, status: 0, body: null, words: 'The gateway did not answer. Check the connection.' };
    }
    let data = null;
    try {
        data = await res.json();
    } catch (e) {
        data = null;
    }
    const err = data && data.error;
    const words = res.ok ? '' : (err && err.message) || fallbackWords(res.status);
    if (res.status === 401 && state.me) signOut('Your token is no longer accepted. ' + words);
    return { ok: res.ok, status: res.status, body: data, words };
}

/* GETs `path`: its body, or null after saying the API's refusal in the
 * message line `msg`. A success clears only a refusal of an earlier read:
 * the result of an agent's action stays until the next action. */
async function read(path, msg) {
    const r = await api('GET', path);
    const m = $(msg);
    if (!r.ok) {
        say(msg, r.words);
        m.dataset.read = 'failed';
    } else if (m.dataset.read) say(msg, '');
    return r.ok ? r.body : null;
}

/* Sign-in -------------------------------------------------------------------*/

async function signIn(token) {
    state.token = token;
    const r = await api('GET', '/v1/me');
    if (!r.ok) {
        state.token = null;
        sessionStorage.removeItem(TOKEN_KEY);
        say('signin-msg', r.status === 401 ? 'That token was refused. ' + r.words : r.words);
        $('token').value = '';
        $('token').focus();
        return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.me = r.body;
    say('signin-msg', '');
    $('token').value = '';
    $('signin').hidden = true;
    $('desk').hidden = false;
    $('who').hidden = false;
    $('signout').hidden = false;
    $('who').textContent = 'Signed in as ' + state.me.agent + ' (' + state.me.role + ')';
    document.body.dataset.role = state.me.role;
    $('overview').hidden = !isSupervisor();
    $('funnel').hidden = !isSupervisor();
    refreshAll();
    openStream();
}

function signOut(why) {
    if (state.stream) state.stream.abort();
    state.stream = null;
    state.token = null;
    state.me = null;
    state.open = null;
    sessionStorage.removeItem(TOKEN_KEY);
    delete document.body.dataset.role;
    for (const id of ['desk', 'who', 'signout', 'live']) $(id).hidden = true;
    closeSession();
    $('signin').hidden = false;
    say('signin-msg', why || '');
    $('token').focus();
}

/* The live stream -----------------------------------------------------------*/

/* Reads GET /v1/stream with fetch (EventSource cannot send the bearer
 * header) and dispatches each event; reconnects with a growing wait. */
async function openStream() {
    const ctl = new AbortController();
    state.stream = ctl;
    showLive('connecting…');
    try {
        const res = await fetch('/v1/stream', {
            headers: { Authorization: 'Bearer ' + state.token, Accept: 'text/event-stream' },
            signal: ctl.signal, cache: 'no-store',
        });
        if (res.status === 401) {
            signOut('Your token was not accepted any more. Sign in again.');
            return;
        }
        if (!res.ok || !res.body) throw new Error('stream refused');
        showLive('live');
        state.backoff = BACKOFF_FIRST_MS;
        if (state.dropped) refreshAll();
        state.dropped = false;
        await readEvents(res.body.getReader());
    } catch (e) {
        if (ctl.signal.aborted) return;
    }
    if (state.stream !== ctl) return;
    state.dropped = true;
    const wait = state.backoff;
    state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
    showLive('reconnecting in ' + Math.round(wait / 1000) + ' s');
    setTimeout(() => { if (state.stream === ctl) openStream(); }, wait);
}

function showLive(text) {
    const l = $('live');
    l.hidden = false;
    l.textContent = 'Updates: ' + text;
    l.classList.toggle('good', text === 'live');
}

/* Splits the byte stream into events (blank-line separated; `event:` and
 * `data:` fields; `:` lines are heartbeats) until it ends. */
async function readEvents(reader) {
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
            dispatch(buf.slice(0, end));
            buf = buf.slice(end + 2);
        }
        if (buf.length > STREAM_BUFFER_MAX) throw new Error('event too long');
    }
}

function dispatch(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') name = value;
        else if (field === 'data') data.push(value);
    }
    let payload = null;
    try {
        payload = data.length ? JSON.parse(data.join('\n')) : null;
    } catch (e) {
        payload = null;
    }
    onEvent(name, payload);
}

function onEvent(name, payload) {
    if (name === 'queue') later('queue', loadQueue);
    else if (name === 'session') {
        later('queue', loadQueue);
        const id = payload && payload.id;
        if (state.open && (!id || id === state.open)) later('session', loadSession);
    } else if (name === 'callbacks') later('callbacks', loadCallbacks);
    else if (name === 'overview' && isSupervisor()) {
        later('overview', loadOverview);
        later('funnel', loadFunnel);
    }
}

/* Runs `fn` once after REFRESH_DELAY_MS, however often it is asked meanwhile. */
function later(name, fn) {
    if (state.timers[name]) return;
    state.timers[name] = setTimeout(() => {
        delete state.timers[name];
        if (state.me) fn();
    }, REFRESH_DELAY_MS);
}

function refreshAll() {
    loadQueue();
    loadCallbacks();
    if (state.open) loadSession();
    if (isSupervisor()) {
        loadOverview();
        loadFunnel();
    }
}

/* The queue -----------------------------------------------------------------*/

/* Waiting sessions come a page at a time from /v1/queue (oldest first);
 * "all live sessions" is /v1/sessions, the newest LIVE_LIMIT of them. */
async function loadQueue() {
    const waiting = $('queue-state').value === 'transfer';
    $('queue-channel').disabled = waiting;
    $('queue-when').textContent = waiting ? 'Waiting' : 'Since last step';
    let path;
    if (waiting) path = '/v1/queue?' + new URLSearchParams({ offset: String(state.offset), limit: String(PAGE_SIZE) });
    else {
        const q = new URLSearchParams({ limit: String(LIVE_LIMIT) });
        if ($('queue-channel').value) q.set('channel', $('queue-channel').value);
        path = '/v1/sessions?' + q;
    }
    const body = await read(path, 'queue-msg');
    if (!body) return;
    const sessions = body.sessions || [];
    if (!waiting) {
        state.offset = 0;
        state.total = sessions.length;
        drawQueue(sessions, body.truncated ? ' (the newest; more are live)' : '');
        return;
    }
    state.total = body.total;
    if (sessions.length === 0 && state.offset > 0 && state.total > 0) {
        state.offset = Math.max(0, Math.floor((state.total - 1) / PAGE_SIZE) * PAGE_SIZE);
        loadQueue(); /* the page emptied under us: show the last one */
        return;
    }
    drawQueue(sessions, '');
}

function drawQueue(sessions, more) {
    const body = $('queue-rows');
    clear(body);
    state.rows = [];
    for (const s of sessions) body.appendChild(queueRow(s));
    $('queue-empty').hidden = sessions.length > 0;
    $('queue-empty').textContent = $('queue-state').value ? 'Nobody is waiting.' : 'No live sessions.';
    const first = sessions.length ? state.offset + 1 : 0;
    $('queue-range').textContent = first + '–' + (state.offset + sessions.length) + ' of ' + state.total + more;
    $('queue-prev').disabled = state.offset === 0;
    $('queue-next').disabled = state.offset + sessions.length >= state.total;
    tick();
}

function queueRow(s) {
    const tr = el('tr');
    tr.dataset.id = s.id;
    tr.appendChild(el('td', s.channel, 'chan chan-' + s.channel));
    tr.appendChild(el('td', s.caller || ''));
    tr.appendChild(el('td', s.flow + '.' + s.node));
    tr.appendChild(el('td', s.reason || s.queue || ''));
    const waited = el('td', '', 'num');
    tr.appendChild(waited);
    const open = button('Open', () => showSession(s.id));
    open.setAttribute('aria-label', 'Open ' + s.channel + ' session of ' + (s.caller || s.id));
    const cell = el('td');
    cell.appendChild(open);
    tr.appendChild(cell);
    if (s.id === state.open) tr.classList.add('current');
    state.rows.push({ since: s.waiting_since_ms || s.updated_ms, cell: waited });
    return tr;
}

/* The waiting times of the page shown, once a second. */
function tick() {
    const now = Date.now();
    for (const r of state.rows) r.cell.textContent = r.since ? duration(now - r.since) : '';
}

function page(step) {
    state.offset = Math.max(0, state.offset + step * PAGE_SIZE);
    loadQueue();
}

/* One session ---------------------------------------------------------------*/

function showSession(id) {
    state.open = id;
    say('session-msg', '');
    $('resume-uri').hidden = true;
    $('reply-text').value = '';
    for (const tr of $('queue-rows').children) tr.classList.toggle('current', tr.dataset.id === id);
    loadSession().then(() => $('session-title').focus());
}

function closeSession() {
    state.open = null;
    $('session-title').textContent = 'Session';
    $('session-none').hidden = false;
    $('session-body').hidden = true;
    for (const tr of $('queue-rows').children) tr.classList.remove('current');
}

async function loadSession() {
    const id = state.open;
    const r = await api('GET', '/v1/sessions/' + encodeURIComponent(id));
    if (id !== state.open) return;
    $('session-none').hidden = true;
    $('session-body').hidden = false;
    if (!r.ok) {
        clear($('session-facts'));
        clear($('events'));
        $('sms-box').hidden = true;
        $('voice-box').hidden = true;
        say('session-msg', r.words);
        return;
    }
    drawSession(r.body);
}

function fact(dl, name, value) {
    if (value === undefined || value === null || value === '') return;
    dl.appendChild(el('dt', name));
    dl.appendChild(el('dd', value));
}

function drawSession(c) {
    $('session-title').textContent = 'Session ' + c.id;
    $('session-title').tabIndex = -1;
    const dl = $('session-facts');
    clear(dl);
    fact(dl, 'Channel', c.channel);
    fact(dl, 'State', c.state);
    fact(dl, 'Stopped at', c.flow + '.' + c.node);
    fact(dl, 'Language', c.lang);
    fact(dl, 'Caller', c.caller);
    const v = c.verification || {};
    fact(dl, 'Verified', v.level === 'pin' ? 'yes, with PIN' + (v.id ? ' (ID ' + v.id + ')' : '') : 'no');
    if (c.transfer) fact(dl, 'Transferred', (c.transfer.queue || '') + ': ' + (c.transfer.reason || ''));
    for (const [k, val] of Object.entries(c.vars || {})) fact(dl, k, typeof val === 'string' ? val : JSON.stringify(val));
    fact(dl, 'Started', clock(c.created_ms));
    fact(dl, 'Last change', clock(c.updated_ms));

    const waiting = c.state === 'transfer';
    $('sms-box').hidden = c.channel !== 'sms';
    const held = $('held');
    clear(held);
    for (const m of c.held || []) {
        const li = el('li');
        li.appendChild(el('time', clock(m.at_ms)));
        li.appendChild(el('span', m.text, 'text'));
        held.appendChild(li);
    }
    if (!(c.held || []).length) held.appendChild(el('li', 'No messages held.', 'note'));
    $('reply-form').hidden = !canAct() || !waiting;

    $('voice-box').hidden = c.channel !== 'voice';
    $('assist').textContent = c.assist
        ? 'Back from ' + c.assist.node + ': ' + c.assist.result
        : 'The caller has not been sent to a step yet.';
    $('resume-form').hidden = !canAct() || !state.me.can_resume;

    const events = $('events');
    clear(events);
    for (const e of c.events || []) {
        const li = el('li');
        li.appendChild(el('time', clock(e.at_ms)));
        li.appendChild(el('span', ' ' + e.kind + ' at ' + e.node + (e.input !== undefined ? ': ' + e.input : '')));
        events.appendChild(li);
    }
    if (!(c.events || []).length) events.appendChild(el('li', 'Nothing recorded.', 'note'));
}

async function sendReply(ev) {
    ev.preventDefault();
    const text = $('reply-text').value.trim();
    if (!text) return;
    const r = await api('POST', '/v1/sessions/' + encodeURIComponent(state.open) + '/reply', { text });
    if (r.ok) {
        $('reply-text').value = '';
        say('session-msg', 'Reply queued: it goes out by SMS.', true);
    } else say('session-msg', r.words);
}

async function release() {
    const r = await api('POST', '/v1/sessions/' + encodeURIComponent(state.open) + '/release');
    if (r.ok) {
        say('session-msg', 'Released: the citizen\'s next SMS starts self-service again.', true);
        loadSession();
        loadQueue();
    } else say('session-msg', r.words);
}

async function resume(ev) {
    ev.preventDefault();
    const node = $('resume-node').value;
    const r = await api('POST', '/v1/sessions/' + encodeURIComponent(state.open) + '/resume', { node });
    if (!r.ok) {
        say('session-msg', r.words);
        return;
    }
    const p = $('resume-uri');
    clear(p);
    p.appendChild(document.createTextNode('Transfer the caller to '));
    p.appendChild(el('code', r.body.uri));
    p.appendChild(document.createTextNode(' within ' + r.body.expires_in_s +
        ' s. They come back to your phone afterwards.'));
    p.hidden = false;
    say('session-msg', '');
}

/* Callbacks -----------------------------------------------------------------*/

async function loadCallbacks() {
    const body = await read('/v1/callbacks?state=' + encodeURIComponent($('cb-state').value), 'cb-msg');
    if (!body) return;
    const rows = $('cb-rows');
    clear(rows);
    const list = body.callbacks || [];
    for (const cb of list) rows.appendChild(callbackRow(cb));
    $('cb-empty').hidden = list.length > 0;
}

function callbackRow(cb) {
    const tr = el('tr');
    tr.dataset.ref = cb.ref;
    tr.appendChild(el('td', cb.ref, 'ref'));
    tr.appendChild(el('td', cb.caller));
    tr.appendChild(el('td', cb.reason));
    tr.appendChild(el('td', cb.agent || ''));
    tr.appendChild(el('td', clock(cb.created_ms)));
    const cell = el('td', null, 'buttons');
    if (canAct() && cb.state === 'queued') cell.appendChild(button('Claim', () => callbackAction(cb.ref, 'claim')));
    if (canAct() && cb.state === 'claimed') cell.appendChild(button('Done', () => callbackAction(cb.ref, 'done')));
    tr.appendChild(cell);
    return tr;
}

async function callbackAction(ref, what) {
    const r = await api('POST', '/v1/callbacks/' + encodeURIComponent(ref) + '/' + what);
    if (r.ok) say('cb-msg', what === 'claim' ? ref + ' is yours: call the citizen back.' : ref + ' is done.', true);
    else say('cb-msg', ref + ': ' + r.words);
    loadCallbacks();
}

/* The supervisor's view -----------------------------------------------------*/

/* The overview is drawn from whatever the API sends: one card per part
 * (calls, sessions, outbox, dependencies …), its numbers and words as
 * rows, so a new figure on the server shows without a change here. */
async function loadOverview() {
    const body = await read('/v1/overview', 'overview-msg');
    if (!body) return;
    const box = $('overview-body');
    clear(box);
    const loose = {};
    for (const [part, value] of Object.entries(body)) {
        if (value !== null && typeof value === 'object') box.appendChild(overviewCard(part, value));
        else loose[part] = value;
    }
    box.insertBefore(overviewCard('gateway', loose), box.firstChild);
}

function overviewCard(part, value) {
    const card = el('section', null, 'card');
    card.dataset.part = part;
    card.appendChild(el('h3', label(part)));
    const dl = el('dl', null, 'facts');
    addRows(dl, '', value);
    card.appendChild(dl);
    return card;
}

const ACRONYMS = { ussd: 'USSD', sms: 'SMS', sip: 'SIP', rtp: 'RTP' };

/* "outbox_dead" -> "Outbox dead"; channel names as people write them. */
function label(key) {
    const s = String(key).split(/[_ ]/).map((w) => ACRONYMS[w] || w).join(' ');
    return s.charAt(0).toUpperCase() + s.slice(1);
}

function addRows(dl, prefix, value) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        for (const [k, v] of Object.entries(value)) addRows(dl, prefix ? prefix + ' ' + k : k, v);
        return;
    }
    const time = /_ms$/.test(prefix) && typeof value === 'number';
    const dt = el('dt', label(time ? prefix.replace(/_ms$/, '') : prefix || 'value'));
    const dd = el('dd', time ? clock(value) : Array.isArray(value) ? value.join(', ') : value);
    if (value === 'up') dd.className = 'good';
    else if (value === 'down') dd.className = 'bad';
    dd.dataset.key = prefix;
    dl.appendChild(dt);
    dl.appendChild(dd);
}

/* How a step is left, in the order the bars show it. */
const OUTCOMES = [
    ['next', 'went on'],
    ['end', 'finished'],
    ['transfer', 'to a person'],
    ['invalid', 'invalid input'],
    ['timeout', 'timed out'],
    ['hangup', 'hung up or gave up'],
];
/* Entered and not left (yet): still there, or a USSD or SMS caller who
 * went quiet, which leaves no outcome. The bar's grey rest. */
const SILENT = 'still there or went quiet';

async function loadFunnel() {
    const body = await read('/v1/funnel', 'funnel-msg');
    if (!body) return;
    const legend = $('funnel-legend');
    clear(legend);
    for (const [key, words] of OUTCOMES) {
        const li = el('li');
        li.appendChild(el('span', null, 'swatch out-' + key));
        li.appendChild(document.createTextNode(words));
        legend.appendChild(li);
    }
    const rest = el('li');
    rest.appendChild(el('span', null, 'swatch out-silent'));
    rest.appendChild(document.createTextNode(SILENT));
    legend.appendChild(rest);
    const box = $('funnel-body');
    clear(box);
    const flows = (body.flows || []).filter((f) => f.nodes.some((n) => n.entered > 0));
    if (!flows.length) box.appendChild(el('p', 'No caller has reached a step yet.', 'note'));
    for (const f of flows) box.appendChild(funnelFlow(f));
}

/* One flow: a row per step reached; the bar's length is the step's share
 * of the flow's busiest step, its segments how callers left it. */
function funnelFlow(f) {
    const sec = el('section', null, 'flow');
    sec.dataset.flow = f.flow;
    sec.appendChild(el('h3', f.flow));
    const most = Math.max(...f.nodes.map((n) => n.entered));
    const ol = el('ol', null, 'steps');
    for (const n of f.nodes) {
        if (!n.entered) continue;
        const li = el('li', null, 'step');
        li.dataset.node = n.node;
        li.dataset.entered = n.entered;
        li.appendChild(el('span', n.node + (n.kind ? ' (' + n.kind + ')' : ''), 'step-name'));
        const bar = el('span', null, 'bar');
        bar.style.width = (100 * n.entered / most).toFixed(1) + '%';
        const words = [];
        for (const [key, what] of OUTCOMES) {
            const count = (n.left && n.left[key]) || 0;
            li.dataset['left' + key.charAt(0).toUpperCase() + key.slice(1)] = count;
            if (!count) continue;
            const pct = Math.round(100 * count / n.entered);
            const seg = el('span', null, 'seg out-' + key);
            seg.style.width = (100 * count / n.entered).toFixed(1) + '%';
            seg.title = count + ' ' + what + ' (' + pct + '%)';
            bar.appendChild(seg);
            words.push(pct + '% ' + what);
        }
        const silent = n.entered - OUTCOMES.reduce((sum, [key]) => sum + ((n.left && n.left[key]) || 0), 0);
        if (silent > 0) words.push(Math.round(100 * silent / n.entered) + '% ' + SILENT);
        li.appendChild(bar);
        li.appendChild(el('span', n.entered + ' reached' + (words.length ? ': ' + words.join(', ') : ''), 'step-words'));
        ol.appendChild(li);
    }
    sec.appendChild(ol);
    return sec;
}

/* Wiring --------------------------------------------------------------------*/

function wire() {
    $('signin-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const token = $('token').value.trim();
        if (token) signIn(token);
    });
    $('signout').addEventListener('click', () => signOut('Signed out.'));
    $('queue-state').addEventListener('change', () => { state.offset = 0; loadQueue(); });
    $('queue-channel').addEventListener('change', () => { state.offset = 0; loadQueue(); });
    $('queue-filter').addEventListener('submit', (ev) => ev.preventDefault());
    $('queue-prev').addEventListener('click', () => page(-1));
    $('queue-next').addEventListener('click', () => page(1));
    $('reply-form').addEventListener('submit', sendReply);
    $('release').addEventListener('click', release);
    $('resume-form').addEventListener('submit', resume);
    $('session-close').addEventListener('click', closeSession);
    $('cb-state').addEventListener('change', loadCallbacks);
    setInterval(tick, 1000);
    setInterval(() => {
        if (isSupervisor()) {
            later('overview', loadOverview);
            later('funnel', loadFunnel);
        }
    }, FIGURES_EVERY_MS);
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else $('token').focus();
}

document.addEventListener('DOMContentLoaded', wire);
