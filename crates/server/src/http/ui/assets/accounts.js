// The accounts page (issue 10): session lights and the bank's code prompt, live. The page
// subscribes to /realtime/events with a single-use ticket and re-reads /app/api/accounts when an
// event arrives; while the stream is down it polls instead.
'use strict';
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const list = document.getElementById('accounts');
  const live = document.getElementById('live-status');
  const tray = document.getElementById('prompts');
  if (!list) return;
  const LABELS = { off: 'Off', starting: 'Starting', running: 'Running', awaiting_code: 'Waiting for a code', needs_attention: 'Needs attention' };
  const EVENTS = ['assistance.requested', 'assistance.fulfilled', 'assistance.cancelled', 'assistance.expired',
    'session.started', 'session.stopped', 'session.needs_attention', 'login.failed', 'login.succeeded',
    'scrape.failed', 'scrape.succeeded'];
  const countdowns = new Map();
  const submitted = new Map(); // account id -> request id of the code in flight
  let stream = null;
  let pollTimer = null;
  let refreshing = null;
  let again = false;

  async function api(method, path, body) {
    const opts = { method, headers: { 'x-csrf-token': csrf }, credentials: 'same-origin' };
    if (body !== undefined) {
      opts.headers['content-type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    if (res.redirected && new URL(res.url).pathname === '/app/login') {
      // Signed out meanwhile (another tab, or the session was revoked).
      location.assign('/app/login');
      return { ok: false, status: 401, data: null };
    }
    let data = null;
    try { data = await res.json(); } catch (_) { /* empty body */ }
    return { ok: res.ok, status: res.status, data };
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmt(secs) {
    const s = Math.max(0, secs);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  function stopCountdown(id) {
    clearInterval(countdowns.get(id));
    countdowns.delete(id);
  }

  function buildPrompt(a) {
    const p = a.prompt;
    const form = el('form', { class: 'prompt', 'data-request-id': p.id, 'data-account-id': a.id, novalidate: '' });
    const inputId = `otp-${a.id}`;
    const numeric = p.type === 'numeric';
    const what = numeric ? `${p.length} digits` : `${p.length} letters or digits`;
    form.append(el('label', { for: inputId }, `Code from the bank for ${a.name} (${what})`));
    if (p.purpose) form.append(el('p', { class: 'meta' }, p.purpose));
    const input = el('input', {
      id: inputId, name: 'code', type: 'text', autocomplete: 'one-time-code', spellcheck: 'false',
      maxlength: String(p.length), minlength: String(p.length), required: '',
      inputmode: numeric ? 'numeric' : 'text', pattern: numeric ? '[0-9]*' : '[A-Za-z0-9]*',
      'aria-describedby': `${inputId}-meta`,
    });
    form.append(input);
    const meta = el('p', { class: 'meta', id: `${inputId}-meta` });
    meta.append(el('span', { class: 'attempts' }), ' · ', el('span', { class: 'expires' }));
    form.append(meta);
    // Always in the form (empty when there is no error), so an error appearing moves nothing.
    form.append(el('p', { class: 'error prompt-error', role: 'alert' }));
    form.append(el('button', { type: 'submit' }, 'Send code'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const code = input.value.trim();
      const err = form.querySelector('.prompt-error');
      if (code.length !== p.length) {
        err.textContent = `The code has ${p.length} characters.`;
        return;
      }
      form.querySelector('button').disabled = true;
      submitted.set(a.id, form.dataset.requestId);
      const res = await api('POST', `/app/api/accounts/${a.id}/otp`, { code, request_id: form.dataset.requestId });
      form.querySelector('button').disabled = false;
      if (!res.ok) {
        submitted.delete(a.id);
        err.textContent = (res.data && res.data.error) || 'The code could not be sent.';
      } else {
        err.textContent = '';
        form.querySelector('.expires').textContent = 'Checking the code with the bank…';
        input.value = '';
      }
      refresh();
    });
    tray.append(form);
    input.focus();
    return form;
  }

  function renderPrompt(a) {
    let form = tray.querySelector(`form.prompt[data-account-id="${a.id}"]`);
    if (!a.prompt) {
      if (form) {
        form.remove();
        stopCountdown(a.id);
        submitted.delete(a.id);
      }
      return;
    }
    if (!form || form.dataset.requestId !== a.prompt.id) {
      if (form) form.remove();
      form = buildPrompt(a);
    }
    form.querySelector('.attempts').textContent = `Attempts: ${a.prompt.attempts}`;
    const err = form.querySelector('.prompt-error');
    if (a.prompt.attempts > Number(form.dataset.attempts || 0)) {
      err.textContent = 'The bank did not accept that code.';
    }
    form.dataset.attempts = String(a.prompt.attempts);
    stopCountdown(a.id);
    const deadline = Date.now() + a.prompt.expires_in * 1000;
    const tick = () => {
      const left = Math.round((deadline - Date.now()) / 1000);
      form.querySelector('.expires').textContent = left > 0 ? `Expires in ${fmt(left)}` : 'Expired';
    };
    tick();
    countdowns.set(a.id, setInterval(tick, 1000));
  }

  async function loadMovements(li, id) {
    const res = await api('GET', `/app/api/accounts/${id}/movements`);
    if (!res.ok) return;
    const box = li.querySelector('.movement-list');
    box.replaceChildren();
    if (res.data.length === 0) {
      box.append(el('p', { class: 'empty' }, 'No movements yet. Press “Read now” to fetch them.'));
      return;
    }
    const table = el('table', { class: 'movements' });
    const head = el('tr');
    for (const h of ['Date', 'Name', 'Amount']) head.append(el('th', { scope: 'col' }, h));
    table.append(head);
    for (const m of res.data) {
      const tr = el('tr', { class: 'movement' });
      const d = new Date(m.received_at);
      tr.append(el('td', {}, Number.isNaN(d.getTime()) ? m.received_at : d.toLocaleString()));
      tr.append(el('td', {}, m.name || m.description));
      tr.append(el('td', { class: 'amount' }, `${m.amount} ${m.currency}`));
      table.append(tr);
    }
    box.append(table);
    li.querySelector('details.movements').open = true;
  }

  function render(accounts) {
    for (const a of accounts) {
      const li = list.querySelector(`li[data-account-id="${a.id}"]`);
      if (!li) continue;
      const light = li.querySelector('.light');
      light.dataset.light = a.light;
      light.textContent = LABELS[a.light] || 'Off';
      let blocked = li.querySelector('.blocked');
      if (a.blocked_reason) {
        if (!blocked) {
          blocked = el('p', { class: 'blocked' });
          li.querySelector('.account-head').after(blocked);
        }
        // The same markup as the server's (pages::blocked): the badge, then the reason.
        if (blocked.dataset.reason !== a.blocked_reason) {
          blocked.dataset.reason = a.blocked_reason;
          blocked.replaceChildren(el('span', { class: 'badge fatal' }, 'Blocked'),
            ` ${a.blocked_reason.replaceAll('_', ' ')} — fix the login, then read again.`);
        }
      } else if (blocked) {
        blocked.remove();
      }
      renderLastRun(li, a.last_run);
      renderPrompt(a);
    }
    // Prompts of accounts no longer listed go too.
    const listed = new Set(accounts.map(a => a.id));
    for (const form of tray.querySelectorAll('form.prompt')) {
      if (!listed.has(form.dataset.accountId)) {
        stopCountdown(form.dataset.accountId);
        form.remove();
      }
    }
  }

  // The docked prompts cover the page's bottom: the page gets as much room at its end, so
  // everything stays reachable (growing the page's end moves nothing in view).
  new ResizeObserver(() => {
    document.body.style.paddingBottom = tray.childElementCount ? `${tray.offsetHeight}px` : '';
  }).observe(tray);

  // The same markup as the server's: "Last run: " and the outcome with its time, or "none yet".
  const OUTCOMES = { succeeded: ['running', 'Succeeded'], running: ['starting', 'Running'], failed: ['needs_attention', 'Failed'], cancelled: ['off', 'Cancelled'] };
  function renderLastRun(li, run) {
    const p = li.querySelector('.last-run');
    const key = run ? `${run.outcome} ${run.at}` : '';
    if (!p || p.dataset.key === key) return;
    p.dataset.key = key;
    if (!run) { p.replaceChildren('Last run: none yet'); return; }
    const [light, text] = OUTCOMES[run.outcome] || ['off', 'Other'];
    const outcome = el('span', { class: 'outcome', 'data-light': light, 'data-outcome': run.outcome }, text);
    const when = el('time', { datetime: run.at }, new Date(run.at).toLocaleString());
    p.replaceChildren('Last run: ', outcome, ' · ', when);
  }

  async function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      do {
        again = false;
        const res = await api('GET', '/app/api/accounts');
        if (res.ok) render(res.data);
      } while (again);
    })();
    try { await refreshing; } finally { refreshing = null; }
  }

  function onEvent(ev) {
    refresh();
    if (['scrape.succeeded', 'scrape.failed', 'session.stopped', 'login.failed'].includes(ev.type)) {
      live.textContent = 'Live';
    }
    if (ev.type === 'scrape.succeeded' || ev.type === 'assistance.fulfilled') {
      try {
        const data = JSON.parse(ev.data);
        const li = list.querySelector(`li[data-account-id="${data.accountId}"]`);
        if (li) loadMovements(li, data.accountId);
      } catch (_) { /* not ours */ }
    }
  }

  function startPolling() {
    if (pollTimer === null) pollTimer = setInterval(refresh, 3000);
  }
  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
  }

  async function connect() {
    const t = await api('POST', '/app/api/ticket').catch(() => null);
    if (!t || !t.ok) {
      startPolling();
      setTimeout(connect, 5000);
      return;
    }
    stream = new EventSource(`/realtime/events?ticket=${encodeURIComponent(t.data.ticket)}`);
    stream.addEventListener('open', () => {
      stopPolling();
      live.textContent = 'Live';
      document.body.dataset.live = 'on';
      refresh();
    });
    for (const name of EVENTS) stream.addEventListener(name, onEvent);
    stream.addEventListener('error', () => {
      // A ticket is single use: reconnect with a new one, poll meanwhile.
      stream.close();
      document.body.dataset.live = 'off';
      live.textContent = 'Reconnecting…';
      startPolling();
      setTimeout(connect, 3000);
    });
  }

  for (const btn of list.querySelectorAll('button[data-read]')) {
    btn.addEventListener('click', async (ev) => {
      ev.preventDefault();
      const res = await api('POST', `/app/api/accounts/${btn.dataset.read}/read`);
      live.textContent = res.ok ? 'Reading…' : 'Could not start the read.';
      refresh();
    });
  }
  for (const d of list.querySelectorAll('details.movements')) {
    d.addEventListener('toggle', () => {
      if (d.open) loadMovements(d.closest('li'), d.dataset.movements);
    });
  }
  refresh();
  connect();
})();
