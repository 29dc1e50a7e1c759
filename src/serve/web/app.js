// The pricer web app: price a product or a file, watch training runs live, explore sweeps and
// evaluations, and play "Beat the model". Plain JavaScript over the server's JSON API; charts with
// Chart.js (served by pricer itself, so it works offline). Pages are addressed by the URL's hash
// (#price?text=..., #runs/3,5, #sweeps/NAME, #evals/7, #game) so a view can be linked to.
'use strict';

const $ = (sel) => document.querySelector(sel);
const money = (v) => (v === null || v === undefined || !isFinite(v) ? '–' : '$' + Number(v).toFixed(2));
const num = (v, d = 3) => (v === null || v === undefined || !isFinite(v) ? '–' : Number(v).toPrecision(d));
const PALETTE = ['#3a6fd8', '#d8553a', '#2f9e44', '#9c36b5', '#e8a317', '#1098ad', '#c2255c', '#5c940d'];

function duration(s) {
  if (!isFinite(s)) return '–';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// GET (no body) or POST JSON; an error reply's message becomes the thrown Error's.
async function api(path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const j = await res.json().catch(() => null);
  if (!res.ok) throw new Error(j && j.error ? j.error.message : `HTTP ${res.status}`);
  return j;
}

// ---- charts: one Chart per canvas, updated in place; each canvas carries its point count ----

const charts = {};
function drawChart(canvas, config) {
  const id = canvas.id;
  const points = config.data.datasets.reduce((n, d) => n + d.data.length, 0);
  canvas.dataset.points = points;
  if (charts[id] && charts[id].canvas === canvas && charts[id].config.type === config.type) {
    charts[id].data = config.data;
    charts[id].options = config.options;
    charts[id].update('none');
    return charts[id];
  }
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(canvas, config);
  return charts[id];
}

function lineOptions(xTitle, yTitle, logY = false) {
  return {
    animation: false, parsing: false, normalized: true, maintainAspectRatio: false,
    scales: {
      x: { type: 'linear', title: { display: !!xTitle, text: xTitle } },
      y: { type: logY ? 'logarithmic' : 'linear', title: { display: !!yTitle, text: yTitle } },
    },
    plugins: { legend: { display: true, labels: { boxWidth: 12 } } },
  };
}

// ---- polling: one timer, for the page on screen ----

let pollTimer = null;
function poll(fn, ms) {
  stopPolling();
  const tick = async () => {
    try { await fn(); } catch (e) { console.error(e); }
    pollTimer = setTimeout(tick, ms);
  };
  tick();
}
function stopPolling() { if (pollTimer) clearTimeout(pollTimer); pollTimer = null; }

// ---- Price ----

async function priceOnce() {
  const text = $('#price-text').value.trim();
  if (!text) return;
  $('#price-error').hidden = true;
  $('#price-go').disabled = true;
  try {
    const r = await api('/v1/price', { text, readout: $('#price-readout').value, distribution: true });
    $('#price-result').hidden = false;
    $('#price-value').textContent = Number(r.price).toFixed(2);
    $('#price-interval').textContent =
      `${Math.round(r.interval.coverage * 100)}% interval ${money(r.interval.lo)} – ${money(r.interval.hi)}`;
    $('#price-readouts').textContent = `${r.readout} · median ${money(r.median)} · expected ${money(r.expected)} · ` +
      `${(100 * r.number_mass).toFixed(1)}% of the probability on numbers · ${r.timing.total_ms.toFixed(0)} ms`;
    const body = $('#price-top tbody');
    body.replaceChildren(...(r.top || []).map((t) => el('tr', {}, el('td', {}, t.token), el('td', { class: 'num' }, (100 * t.prob).toFixed(2) + '%'))));
    if (r.distribution) {
      const pts = r.distribution.values.map((v, i) => ({ x: v, y: r.distribution.probs[i] })).sort((a, b) => a.x - b.x);
      const opts = lineOptions('first number token of the price ($)', 'probability');
      opts.plugins.legend.display = false;
      drawChart($('#price-chart'), { type: 'line', data: { datasets: [{ data: pts, pointRadius: 0, borderWidth: 1, fill: true, borderColor: PALETTE[0], backgroundColor: '#3a6fd833' }] }, options: opts });
    }
    document.body.dataset.priced = r.price;
  } catch (e) {
    $('#price-error').textContent = e.message;
    $('#price-error').hidden = false;
  } finally {
    $('#price-go').disabled = false;
  }
}

// RFC 4180: quoted fields with "" escapes and line breaks.
function parseCsv(text) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field); rows.push(row); row = []; field = '';
    } else field += c;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

function batchItems(name, text) {
  text = text.replace(/^\uFEFF/, '');
  if (/\.csv$/i.test(name)) {
    const rows = parseCsv(text);
    const col = (rows[0] || []).map((h) => h.trim().toLowerCase()).indexOf('text');
    if (col < 0) throw new Error(`${name}: the header has no "text" column`);
    return rows.slice(1).map((r, i) => ({ text: r[col], line: i + 2 })).filter((r) => r.text && r.text.trim());
  }
  const items = [];
  text.split('\n').forEach((l, i) => {
    if (!l.trim()) return;
    let j;
    try { j = JSON.parse(l); } catch (e) { throw new Error(`${name}:${i + 1}: not JSON`); }
    if (!j || typeof j.text !== 'string') throw new Error(`${name}:${i + 1}: no "text" string`);
    items.push({ text: j.text, id: j.id, line: i + 1 });
  });
  return items;
}

let batchResults = [];
async function priceBatch() {
  const file = $('#batch-file').files[0];
  if (!file) return;
  $('#price-error').hidden = true;
  $('#batch-downloads').hidden = true;
  $('#batch-go').disabled = true;
  try {
    const items = batchItems(file.name, await file.text());
    if (!items.length) throw new Error(`${file.name}: no product texts`);
    batchResults = [];
    const t0 = performance.now(), chunk = 32, readout = $('#price-readout').value;
    $('#batch-progress').max = items.length;
    for (let i = 0; i < items.length; i += chunk) {
      const part = items.slice(i, i + chunk);
      const r = await api('/v1/price', { texts: part.map((x) => x.text), readout });
      r.results.forEach((p, k) => batchResults.push({
        line: part[k].line, ...(part[k].id !== undefined ? { id: part[k].id } : {}),
        price: p.price, lo: p.interval.lo, hi: p.interval.hi, readout: p.mode, text: part[k].text,
      }));
      const done = batchResults.length, rate = done / ((performance.now() - t0) / 1000);
      $('#batch-progress').value = done;
      $('#batch-status').textContent = `${done}/${items.length} · ${rate.toFixed(1)} items/s · ETA ${duration((items.length - done) / rate)}`;
    }
    $('#batch-downloads').hidden = false;
    document.body.dataset.batchDone = batchResults.length;
  } catch (e) {
    $('#price-error').textContent = e.message;
    $('#price-error').hidden = false;
  } finally {
    $('#batch-go').disabled = false;
  }
}

function download(name, text, type) {
  const a = el('a', { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}
const csvField = (v) => (/[",\n\r]/.test(String(v)) ? '"' + String(v).replace(/"/g, '""') + '"' : String(v));

function showPrice(params) {
  $('#price-nomodel').hidden = !!info.model;
  $('#price-go').disabled = !info.model;
  $('#batch-go').disabled = !info.model;
  if (params.get('readout')) $('#price-readout').value = params.get('readout');
  if (params.get('text') && info.model) {
    $('#price-text').value = params.get('text');
    priceOnce();
  }
}

// ---- Runs ----

const RUN_METRICS = ['train/loss', 'eval/loss', 'eval/mae', 'train/lr', 'train/grad_norm', 'train/tokens_per_s'];
const selectedRuns = new Set();
const runCache = {};  // id -> the run with every metric point loaded so far

// New points only: from the lowest last step over the run's metrics, so no metric misses any.
async function loadRun(id) {
  const prev = runCache[id];
  let after = -1;
  if (prev) {
    const lasts = Object.values(prev.metrics).map((s) => (s.length ? s[s.length - 1][0] : -1));
    after = lasts.length ? Math.min(...lasts) : -1;
  }
  const r = await api(`/api/runs/${id}` + (after >= 0 ? `?after=${after}` : ''));
  if (prev && after >= 0) {
    for (const [name, pts] of Object.entries(r.metrics)) {
      const kept = (prev.metrics[name] || []).filter((p) => p[0] <= after);
      r.metrics[name] = kept.concat(pts);
    }
  }
  runCache[id] = r;
}

function runRow(r) {
  const box = el('input', { type: 'checkbox' });
  box.checked = selectedRuns.has(r.id);
  box.addEventListener('change', () => {
    if (box.checked) selectedRuns.add(r.id); else selectedRuns.delete(r.id);
    history.replaceState(null, '', '#runs/' + [...selectedRuns].join(','));
    refreshRuns();
  });
  const tr = el('tr', { class: selectedRuns.has(r.id) ? 'selected' : '', 'data-run': r.id },
    el('td', {}, box), el('td', {}, r.id), el('td', { title: r.message || '' }, r.name), el('td', {}, r.kind),
    el('td', { class: 'status-' + r.status }, r.status), el('td', { class: 'num' }, r.steps ?? '–'),
    el('td', { class: 'num' }, money(r.best_val_mae)), el('td', { class: 'num' }, num(r.best_loss, 4)),
    el('td', { class: 'num' }, duration(r.duration_s)), el('td', { class: 'num' }, r.tokens_per_s == null ? '–' : Math.round(r.tokens_per_s)));
  return tr;
}

function drawRunCharts() {
  const box = $('#run-charts');
  const runs = [...selectedRuns].map((id) => runCache[id]).filter(Boolean);
  const names = new Set(RUN_METRICS);
  runs.forEach((r) => Object.keys(r.metrics).forEach((m) => { if (!m.startsWith('eval/') || RUN_METRICS.includes(m)) names.add(m); }));
  for (const metric of names) {
    const datasets = runs.filter((r) => r.metrics[metric] && r.metrics[metric].length).map((r, i) => ({
      label: `${r.id} ${r.name}`, data: r.metrics[metric].filter((p) => p[1] !== null).map((p) => ({ x: p[0], y: p[1] })),
      borderColor: PALETTE[i % PALETTE.length], pointRadius: r.metrics[metric].length < 40 ? 2 : 0, borderWidth: 1.5,
    }));
    const id = 'chart-' + metric.replace(/[^a-z0-9]+/gi, '-');
    let canvas = document.getElementById(id);
    if (!datasets.length) { if (canvas) canvas.parentElement.remove(); continue; }
    if (!canvas) {
      canvas = el('canvas', { id, 'data-metric': metric });
      box.append(el('div', { class: 'chart-box' }, el('h3', {}, metric), canvas));
    }
    drawChart(canvas, { type: 'line', data: { datasets }, options: lineOptions('step', '', metric === 'train/lr' ? false : false) });
  }
}

// Two runs' settings side by side, differences marked.
function drawCompare() {
  const box = $('#run-compare');
  const ids = [...selectedRuns];
  if (ids.length !== 2 || !runCache[ids[0]] || !runCache[ids[1]]) { box.replaceChildren(); return; }
  const [a, b] = ids.map((id) => runCache[id]);
  const keys = [...new Set([...Object.keys(a.params || {}), ...Object.keys(b.params || {})])].sort();
  const show = (v) => (v === undefined ? '(unset)' : typeof v === 'string' ? v : JSON.stringify(v));
  let diffs = 0;
  const rows = keys.map((k) => {
    const va = show(a.params[k]), vb = show(b.params[k]);
    const diff = va !== vb;
    diffs += diff;
    return el('tr', { class: diff ? 'diff' : '' }, el('td', {}, k), el('td', {}, va), el('td', {}, vb));
  });
  box.replaceChildren(el('h3', {}, `Settings: run ${a.id} against run ${b.id} — ${diffs} difference${diffs === 1 ? '' : 's'}`),
    el('table', { class: 'grid', id: 'compare-table' }, el('thead', {}, el('tr', {}, el('th', {}, 'setting'), el('th', {}, `${a.id} ${a.name}`), el('th', {}, `${b.id} ${b.name}`))), el('tbody', {}, ...rows)));
}

async function refreshRuns() {
  const runs = await api('/api/runs');
  $('#runs-table tbody').replaceChildren(...runs.slice().reverse().map(runRow));
  for (const id of selectedRuns) await loadRun(id);
  drawRunCharts();
  drawCompare();
}

function showRuns(ids) {
  if (ids) { selectedRuns.clear(); ids.filter((x) => x > 0).forEach((x) => selectedRuns.add(x)); }
  poll(refreshRuns, 2000);
}

// ---- Sweeps ----

let sweeps = [];
function objectiveOf(t, metric) { return t.final ? t.final[metric] : null; }

function parallelChart(trials, metric) {
  const keys = [...new Set(trials.flatMap((t) => Object.keys(t.params || {})))].sort();
  const axes = [...keys, metric];
  const values = (k, t) => (k === metric ? objectiveOf(t, metric) : t.params[k]);
  const scale = {};
  for (const k of axes) {
    const vs = trials.map((t) => values(k, t)).filter((v) => v !== null && v !== undefined);
    if (vs.every((v) => typeof v === 'number')) {
      const pos = vs.every((v) => v > 0), lo = Math.min(...vs), hi = Math.max(...vs);
      const log = pos && hi / lo > 100;
      const f = (v) => (log ? Math.log(v) : v);
      scale[k] = (v) => (hi === lo ? 0.5 : (f(v) - f(lo)) / (f(hi) - f(lo)));
    } else {
      const cats = [...new Set(vs.map(String))].sort();
      scale[k] = (v) => (cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
    }
  }
  const objs = trials.map((t) => objectiveOf(t, metric)).filter((v) => v !== null);
  const lo = Math.min(...objs), hi = Math.max(...objs);
  const colour = (v) => {
    if (v === null || hi === lo) return '#888';
    const f = (v - lo) / (hi - lo);  // 0 best (blue) .. 1 worst (red)
    return `rgb(${Math.round(40 + 200 * f)}, ${Math.round(90 + 40 * (1 - f))}, ${Math.round(220 - 180 * f)})`;
  };
  const datasets = trials.map((t) => ({
    label: `${t.id} ${t.name}`, raw: axes.map((k) => values(k, t)),
    data: axes.map((k, i) => { const v = values(k, t); return { x: i, y: v === null || v === undefined ? null : scale[k](v) }; }),
    borderColor: colour(objectiveOf(t, metric)), borderDash: t.pruned ? [4, 4] : [], pointRadius: 2, borderWidth: 1.5, spanGaps: false,
  }));
  const options = {
    animation: false, parsing: false, maintainAspectRatio: false,
    scales: {
      x: { type: 'linear', min: 0, max: axes.length - 1, ticks: { stepSize: 1, callback: (v) => axes[v] ?? '' } },
      y: { min: 0, max: 1, ticks: { display: false } },
    },
    plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${axes[c.dataIndex]} = ${c.dataset.raw[c.dataIndex]}` } } },
  };
  drawChart($('#sweep-parallel'), { type: 'line', data: { datasets }, options });
}

function drawSweep() {
  const name = $('#sweep-select').value, metric = $('#sweep-objective').value;
  const sweep = sweeps.find((s) => s.name === name);
  if (!sweep) return;
  const trials = sweep.trials;
  const keys = [...new Set(trials.flatMap((t) => Object.keys(t.params || {})))].sort();
  $('#trials-table thead').replaceChildren(el('tr', {}, ...['run', 'name', 'status', ...keys, metric].map((k) => el('th', {}, k))));
  $('#trials-table tbody').replaceChildren(...trials.map((t) => el('tr', { class: t.pruned ? 'pruned' : '' },
    el('td', {}, t.id), el('td', {}, t.name), el('td', { class: 'status-' + t.status }, t.pruned ? 'pruned' : t.status),
    ...keys.map((k) => el('td', {}, JSON.stringify(t.params[k] ?? null))), el('td', { class: 'num' }, num(objectiveOf(t, metric), 4)))));
  const datasets = trials.filter((t) => t.series[metric] && t.series[metric].length).map((t, i) => ({
    label: `${t.id} ${t.name}`, data: t.series[metric].filter((p) => p[1] !== null).map((p) => ({ x: p[0], y: p[1] })),
    borderColor: PALETTE[i % PALETTE.length], borderDash: t.pruned ? [5, 5] : [], pointRadius: 2, borderWidth: 1.5,
  }));
  drawChart($('#sweep-steps'), { type: 'line', data: { datasets }, options: lineOptions('step', metric) });
  parallelChart(trials, metric);
  const done = trials.filter((t) => !t.pruned && t.status === 'finished' && objectiveOf(t, metric) !== null);
  const best = done.sort((a, b) => objectiveOf(a, metric) - objectiveOf(b, metric))[0];
  $('#sweep-best').textContent = best ? `run ${best.id} (${best.name}), ${metric} ${num(objectiveOf(best, metric), 5)}\n` + JSON.stringify(best.params, null, 2)
    : 'no finished trial yet';
}

async function showSweeps(name) {
  poll(async () => {
    sweeps = await api('/api/sweeps');
    const sel = $('#sweep-select'), keep = name || sel.value;
    sel.replaceChildren(...sweeps.map((s) => el('option', { value: s.name }, `${s.name} (${s.trials.length} trials)`)));
    if (keep && sweeps.some((s) => s.name === keep)) sel.value = keep;
    name = null;
    if (!sweeps.length) { $('#sweep-best').textContent = 'No sweep recorded in this run database.'; return; }
    drawSweep();
  }, 5000);
}

// ---- Evals ----

let evals = [];
// Files written before pricers had a status hold complete pricers only.
const pricerStatus = (p) => p.status || (p.metrics ? 'complete' : 'failed');
function bestPricer(results) {
  const done = (results.pricers || []).filter((p) => pricerStatus(p) === 'complete' && p.metrics);
  return done.sort((a, b) => a.metrics.mae - b.metrics.mae)[0];
}

function showEval(id) {
  const e = evals.find((x) => x.id === id);
  const box = $('#eval-detail');
  if (!e) { box.replaceChildren(); return; }
  const parts = [el('h3', {}, `Run ${e.id}: ${e.name}`)];
  if (e.results) {
    const pricers = (e.results.pricers || []).slice().sort((a, b) =>
      (pricerStatus(a) === 'complete' ? 0 : 1) - (pricerStatus(b) === 'complete' ? 0 : 1) || ((a.metrics || {}).mae ?? 1e300) - ((b.metrics || {}).mae ?? 1e300));
    parts.push(el('table', { class: 'grid', id: 'leaderboard' },
      el('thead', {}, el('tr', {}, ...['rank', 'pricer', 'status', 'MAE', '95% interval', 'RMSLE', 'hit rate', 'items'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...pricers.map((p, i) => {
        const m = p.metrics || {};
        const ci = m.mae_ci95_bootstrap ? `${money(m.mae_ci95_bootstrap[0])} – ${money(m.mae_ci95_bootstrap[1])}` : '–';
        const status = pricerStatus(p);
        return el('tr', {}, el('td', {}, status === 'complete' ? i + 1 : '-'), el('td', {}, p.name),
          el('td', { class: 'status-' + (status === 'complete' ? 'finished' : 'failed') }, status),
          el('td', { class: 'num' }, money(m.mae)), el('td', {}, ci), el('td', { class: 'num' }, num(m.rmsle, 3)),
          el('td', { class: 'num' }, m.hit_rate !== undefined ? (100 * m.hit_rate).toFixed(1) + '%' : '–'), el('td', { class: 'num' }, m.n ?? '–'));
      }))));
  } else {
    parts.push(el('p', { class: 'error' }, e.results_missing ? `results.json is gone: ${e.results_missing}` : 'no results recorded'));
  }
  if (e.has_report) parts.push(el('iframe', { src: `/api/evals/${e.id}/report`, title: 'report' }));
  box.replaceChildren(...parts);
}

async function showEvals(id) {
  stopPolling();
  evals = await api('/api/evals');
  $('#evals-table tbody').replaceChildren(...evals.map((e) => {
    const best = e.results ? bestPricer(e.results) : null;
    return el('tr', { 'data-eval': e.id, onclick: () => { history.replaceState(null, '', '#evals/' + e.id); showEval(e.id); } },
      el('td', {}, e.id), el('td', {}, e.name), el('td', { class: 'status-' + e.status }, e.status),
      el('td', {}, e.results ? e.results.meta.split : '–'), el('td', { class: 'num' }, best ? best.metrics.n : '–'),
      el('td', {}, best ? best.name : '–'), el('td', { class: 'num' }, best ? money(best.metrics.mae) : '–'));
  }));
  showEval(id || (evals[0] && evals[0].id));
}

// ---- Beat the model ----

let game = null;
function drawGame(state) {
  game = state;
  $('#game-item').textContent = state.item ? state.item.text : 'Every item has been guessed. Thank you!';
  $('#game-submit').disabled = !state.item;
  $('#game-score tbody').replaceChildren(
    el('tr', {}, el('td', {}, 'you'), el('td', { class: 'num' }, state.guessed), el('td', { class: 'num', id: 'person-mae' }, money(state.person_mae))),
    el('tr', {}, el('td', {}, 'the model'), el('td', { class: 'num' }, state.model_mae === null ? '–' : state.guessed), el('td', { class: 'num', id: 'model-mae' }, money(state.model_mae))));
  $('#game-file').textContent = `Your guesses are saved to ${state.file}. Join the leaderboard: ${state.command}`;
}

async function submitGuess() {
  const v = parseFloat($('#game-guess').value);
  if (!game || !game.item || !isFinite(v) || v < 0) return;
  $('#game-submit').disabled = true;
  try {
    const r = await api('/api/game/guess', { id: game.item.id, price: v });
    $('#game-reveal').textContent = `It sold for ${money(r.price)}. You said ${money(r.guess)}` +
      (r.model_price !== null ? `, the model ${money(r.model_price)}.` : '.');
    $('#game-guess').value = '';
    drawGame(r.state);
    document.body.dataset.guesses = r.state.guessed;
  } catch (e) {
    $('#game-reveal').textContent = e.message;
    $('#game-submit').disabled = false;
  }
}

async function showGame() {
  stopPolling();
  $('#game-off').hidden = info.game;
  $('#game-on').hidden = !info.game;
  if (info.game) drawGame(await api('/api/game'));
}

// ---- routing ----

let info = {};
function route() {
  const [path, query] = (location.hash.slice(1) || 'price').split('?');
  const [page, arg] = path.split('/');
  const known = ['price', 'runs', 'sweeps', 'evals', 'game'];
  const p = known.includes(page) ? page : 'price';
  document.querySelectorAll('.page').forEach((s) => { s.hidden = s.id !== 'page-' + p; });
  document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === p));
  stopPolling();
  const params = new URLSearchParams(query || '');
  if (p === 'price') showPrice(params);
  else if (p === 'runs') showRuns(arg ? arg.split(',').map(Number) : null);
  else if (p === 'sweeps') showSweeps(arg ? decodeURIComponent(arg) : null);
  else if (p === 'evals') showEvals(arg ? Number(arg) : null).catch((e) => { $('#eval-detail').textContent = e.message; });
  else showGame().catch((e) => { $('#game-reveal').textContent = e.message; });
}

async function start() {
  info = await api('/api/info');
  $('#server-info').textContent = (info.model ? `model ${info.model}` : 'no model') + (info.runs_db ? ` · runs ${info.runs_db}` : '');
  $('#price-go').addEventListener('click', priceOnce);
  $('#batch-go').addEventListener('click', priceBatch);
  $('#batch-jsonl').addEventListener('click', () => download('prices.jsonl', batchResults.map((r) => JSON.stringify(r)).join('\n') + '\n', 'application/x-ndjson'));
  $('#batch-csv').addEventListener('click', () => download('prices.csv',
    'line,id,price,lo,hi,readout,text\n' + batchResults.map((r) => [r.line, r.id ?? '', r.price, r.lo, r.hi, r.readout, r.text].map(csvField).join(',')).join('\n') + '\n', 'text/csv'));
  $('#sweep-select').addEventListener('change', drawSweep);
  $('#sweep-objective').addEventListener('change', drawSweep);
  $('#game-submit').addEventListener('click', submitGuess);
  $('#game-guess').addEventListener('keydown', (e) => { if (e.key === 'Enter') submitGuess(); });
  window.addEventListener('hashchange', route);
  route();
  document.body.dataset.ready = '1';
}

start().catch((e) => { document.body.prepend(el('p', { class: 'error' }, 'The server did not answer: ' + e.message)); });
