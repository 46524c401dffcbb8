// coord operator dashboard: plain ES2020, no dependencies, charts drawn as SVG here.
// User data only ever goes in as text nodes or attribute values (never innerHTML).
"use strict";
(() => {
const $ = (id) => document.getElementById(id);
const SVG = new Set(["svg", "path", "polyline", "line", "text", "circle"]);
// h(tag, attrs | "class", ...children): attrs with function values become listeners
function h(tag, a, ...kids) {
  const el = SVG.has(tag) ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  if (typeof a === "string") a = { class: a };
  for (const k in a || {}) {
    const v = a[k];
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v != null && v !== false) el.setAttribute(k, v);
  }
  for (const c of kids.flat(4)) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const table = (head, rows, num = (i) => i > 0) => h("table", null, h("thead", null, h("tr", null, head.map((t, i) => h("th", num(i) ? "n" : null, t)))), h("tbody", null, rows));
const ok = (v) => v != null && Number.isFinite(+v);
const fmtN = (n) => (ok(n) ? Number(n).toLocaleString("en-US") : "–");
const fmtMs = (s) => { if (!ok(s)) return "–"; const m = s * 1000; return m.toFixed(m < 1 ? 3 : m < 10 ? 2 : m < 100 ? 1 : 0); };
const fmtS = (s) => (ok(s) ? (+s).toFixed(s < 10 ? 2 : 0) : "–");
const fmtR = (r) => (ok(r) ? r.toFixed(r >= 100 ? 0 : r >= 10 ? 1 : 2) : "–");
const fmtB = (b) => {
  if (!ok(b)) return "–";
  let i = 0;
  for (b = +b; b >= 1024 && i < 4; i++) b /= 1024;
  return (i ? b.toFixed(b < 10 ? 2 : 1) : b) + " " + ["B", "KiB", "MiB", "GiB", "TiB"][i];
};
const tick = (v) => (v >= 10 ? v.toFixed(0) : String(+v.toPrecision(3)));
const clock = (s) => new Date(s * 1000).toLocaleTimeString([], { hour12: false });
const sw = (c) => { const i = h("i", "sw"); i.style.background = c; return i; }; // CSSOM: fine under a strict CSP
const prevent = (f) => (e) => { e.preventDefault(); f(e); };
const WIN = 300; // seconds of history in the charts
const COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#b877d9", "#3ec7c7", "#fade2a", "#8ab8ff"];

class Ring { // fixed-size ring buffer of (t, v)
  constructor(n = 600) { this.n = n; this.t = new Float64Array(n); this.v = new Float64Array(n); this.i = this.len = 0; }
  push(t, v) {
    if (this.len && t < this.t[(this.i + this.n - 1) % this.n]) this.len = 0; // clock went back
    this.t[this.i] = t; this.v[this.i] = v; this.i = (this.i + 1) % this.n;
    if (this.len < this.n) this.len++;
  }
  since(t0) {
    const out = [];
    for (let k = this.len; k > 0; k--) { const j = (this.i - k + this.n) % this.n; if (this.t[j] >= t0) out.push([this.t[j], this.v[j]]); }
    return out;
  }
}

// ---- fetch and auth ----
let token = sessionStorage.getItem("coord-token");
class AuthError extends Error {}
const hdrs = () => Object.assign({ "Content-Type": "application/json" }, token && { Authorization: token });
// 401 / code 16: a stale token; "user name is empty" (400): no token while auth is on
const NO_USER = "etcdserver: user name is empty";
const isAuth = (st, j) => st === 401 || j?.code === 16 || j?.error?.grpc_code === 16 || j?.error === NO_USER || j?.message === NO_USER;
const errText = (j, st) => j?.message || j?.error?.message || (typeof j?.error === "string" && j.error) || "HTTP " + st;
const locked = () => !$("login").hidden;
async function api(path, body, ms = 5000) {
  const tok = token, ac = new AbortController(), tm = setTimeout(() => ac.abort(), ms);
  try {
    const r = await fetch(path, body === undefined ? { headers: hdrs(), cache: "no-store", signal: ac.signal }
      : { method: "POST", headers: hdrs(), body: JSON.stringify(body), signal: ac.signal });
    const j = await r.json().catch(() => null);
    if (isAuth(r.status, j)) { needLogin(tok); throw new AuthError("authentication required"); }
    if (!r.ok) throw new Error(errText(j, r.status));
    return j;
  } finally { clearTimeout(tm); }
}
function needLogin(tok) {
  if (tok !== token) return; // a reply to a request sent with an older token
  token = null;
  sessionStorage.removeItem("coord-token");
  if (!locked()) { $("login").hidden = false; $("login-user").focus(); }
  authUI();
}
const authUI = () => $("h-auth").replaceChildren(token ? h("a", { href: "#", onclick: prevent(() => needLogin(token)) }, "sign out") : "");
$("login").addEventListener("submit", prevent(async () => {
  $("login-msg").textContent = "";
  try {
    token = null;
    const j = await api("/v3/auth/authenticate", { name: $("login-user").value, password: $("login-password").value });
    if (!j?.token) throw new Error("no token in the reply");
    sessionStorage.setItem("coord-token", (token = j.token));
    $("login").hidden = true;
    $("login-password").value = "";
    authUI();
    refreshKeys();
    if ($("watch-toggle").checked) startWatch();
  } catch (e) { $("login-msg").textContent = "Sign-in failed: " + e.message; }
}));

// ---- polling ----
let lastOk = 0, probe = 0;
async function poll() {
  const t0 = performance.now();
  if (locked() && ++probe % 10) return setTimeout(poll, 1000); // waiting for sign-in: probe every 10 s
  let d = null;
  try { d = await api("/dashboard/api/cluster", undefined, 4000); } catch (e) { status(e); }
  if (d) {
    lastOk = Date.now();
    status(null);
    if (locked()) { $("login").hidden = true; refreshKeys(); } // auth was turned off
    try { render(d); } catch (e) { console.error(e); }
  }
  setTimeout(poll, Math.max(100, 1000 - (performance.now() - t0)));
}
function status(err) {
  $("h-dot").className = "dot " + (err ? "bad" : "ok");
  document.body.classList.toggle("stale", !!err);
  $("banner").hidden = !err;
  if (err) $("banner").textContent = (err instanceof AuthError ? "Authentication required: sign in"
    : `Disconnected (${err.name === "AbortError" ? "timeout" : err.message}), retrying`) + (lastOk ? ` · last update ${Math.round((Date.now() - lastOk) / 1000)} s ago` : "");
}

function render(d) {
  const now = ok(d.now) ? +d.now : Date.now() / 1000, str = (v) => String(v ?? "");
  const ms = (d.members || []).slice().sort((a, b) => str(a.name).localeCompare(str(b.name)) || str(a.id).localeCompare(str(b.id)));
  const byId = new Map(ms.map((m) => [m.id, m])), al = d.alarms || [];
  const who = (el, id) => $(el).replaceChildren(...(id ? [byId.get(id)?.name || "", h("span", "muted", " " + id)] : [h("span", "bad", "none")]));
  $("h-cluster").textContent = d.cluster_id || "–";
  who("h-self", d.self);
  who("h-leader", d.leader);
  $("h-updated").textContent = clock(now);
  $("h-alarms").replaceChildren(...al.map((a) => h("span", "badge", a.alarm + " " + (byId.get(a.member)?.name || a.member))));
  members(ms, d.self, al);
  followers(d.followers || [], now);
  rates(d, now);
  const st = d.state || {};
  $("state").replaceChildren(...[["keys", "Keys"], ["revision", "Revision"], ["compact_revision", "Compact rev"], ["watchers", "Watchers"],
    ["leases", "Leases"], ["leader_changes", "Leader chg."]].map(([k, l]) => h("div", { "data-stat": k, title: k.replace("_", " ") }, h("span", null, l), h("b", null, fmtN(st[k])))));
}

function members(ms, self, al) {
  $("members").replaceChildren(table(["Name", "ID", "Client URLs", "Role", "Term", "Commit", "Applied", "DB size", "Version", "Alarms", "Status"], ms.map((m) => {
    const role = m.role || "unknown", down = m.up === false, lag = ok(m.commit) && ok(m.applied) ? m.commit - m.applied : 0;
    const a = al.filter((x) => x.member === m.id), inUse = ok(m.db_size_in_use) && m.db_size > 0;
    return h("tr", { "data-member-id": m.id, "data-role": role, class: (down ? "down " : "") + (role === "leader" ? "leader" : ""), title: down ? m.error || "down" : null },
      h("td", null, h("b", null, m.name || "–"), m.id === self && h("span", "tag", "self")),
      h("td", "mono", m.id), h("td", "mono", (m.client_urls || []).join(", ")), h("td", null, h("span", "role " + role, role)),
      h("td", "n", fmtN(m.term)), h("td", "n", fmtN(m.commit)), h("td", "n", fmtN(m.applied), lag > 0 && h("span", "warn", " −" + lag)),
      h("td", { class: "n", title: inUse ? "in use " + fmtB(m.db_size_in_use) : null }, fmtB(m.db_size), inUse && h("span", "muted", ` ${Math.round((100 * m.db_size_in_use) / m.db_size)}%`)),
      h("td", null, m.version || "–"), h("td", null, a.length ? a.map((x) => h("span", "badge", x.alarm)) : "–"),
      h("td", null, h("span", "st " + (down ? "down" : m.up ? "up" : "unk"), down ? "down" : m.up ? "up" : "?")));
  }), (i) => i > 3 && i < 8));
}

// ---- leader latency ----
const rtt = new Map(); // follower id -> {ring, name, color}
let nColor = 0, chart = null, hoverX = null;
function followers(fs, now) {
  for (const f of fs) {
    let e = rtt.get(f.id);
    if (!e) rtt.set(f.id, (e = { ring: new Ring(), color: COLORS[nColor++ % COLORS.length] }));
    e.name = f.name || e.name || f.id;
    if (ok(f.rtt?.current)) e.ring.push(now, f.rtt.current * 1000);
  }
  const present = new Set(fs.map((f) => f.id));
  for (const [id, e] of rtt) if (!present.has(id) && !e.ring.since(now - WIN).length) rtt.delete(id);
  drawLatency(now, present);
  const avgs = fs.map((f) => f.rtt?.average).filter((v) => v > 0), fastest = avgs.length > 1 ? Math.min(...avgs) : Infinity;
  const rows = fs.map((f) => {
    const r = f.rtt || {}, why = [];
    const td = (text, bad, reason) => { if (bad) why.push(reason); return h("td", bad ? "n hot" : "n", text); };
    const cells = [fmtMs(r.current), td(fmtMs(r.average), r.average > 3 * fastest, "RTT average > 3× the fastest follower's"),
      fmtMs(r.stddev), fmtMs(r.min), fmtMs(r.max), fmtN(f.success), fmtN(f.fail),
      td(fmtN(f.lag_entries), f.lag_entries > 100, f.lag_entries + " entries behind"),
      td(fmtS(f.lag_seconds), f.lag_seconds > 1, "oldest unacknowledged append > 1 s old"),
      td(ok(f.since_heard) ? fmtS(f.since_heard) + " s" : "–", f.since_heard > 1, `not heard from for ${fmtS(f.since_heard)} s`)];
    return h("tr", { "data-follower": f.id, class: why.length ? "slow" : null, title: why.join("; ") || null },
      h("td", null, sw(rtt.get(f.id).color), f.name || f.id), cells.map((c) => (c instanceof Node ? c : h("td", "n", c))));
  });
  if (!fs.length) rows.push(h("tr", null, h("td", { colspan: 11, class: "muted" }, "No measurements: no leader, or a single member.")));
  $("followers").replaceChildren(table(["Follower", "Cur", "Avg", "σ", "Min", "Max", "OK", "Fail", "Lag", "Lag s", "Heard"], rows),
    h("p", "muted note", "RTT in ms. Lag: entries behind, and age of the oldest unacknowledged append. Heard: since the leader last heard from it."));
}

function niceTicks(max) {
  const raw = max / 4, p = 10 ** Math.floor(Math.log10(raw)), f = raw / p, out = [];
  const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  for (let v = 0; v < max + step * 0.999; v += step) out.push(+v.toPrecision(6));
  return out;
}
function drawLatency(now, present) {
  const svg = $("latency-chart"), W = Math.max(200, Math.round(svg.getBoundingClientRect().width)), H = 200;
  const L = 42, R = 10, T = 8, B = 18, t0 = now - WIN, kids = [];
  const lines = [...rtt].map(([id, e]) => ({ id, e, pts: e.ring.since(t0) }));
  const ticks = niceTicks(Math.max(0, ...lines.flatMap((l) => l.pts.map((p) => p[1]))) * 1.05 || 1), top = ticks[ticks.length - 1];
  const x = (t) => L + ((t - t0) / WIN) * (W - L - R), y = (v) => T + (1 - v / top) * (H - T - B);
  for (const v of ticks) kids.push(h("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }), h("text", { class: "ax", x: L - 5, y: y(v) + 3.5, "text-anchor": "end" }, tick(v)));
  for (let m = 0; m <= 5; m++) kids.push(h("text", { class: "ax", x: x(t0 + m * 60), y: H - 4, "text-anchor": ["start", "middle", "end"][m ? (m < 5 ? 1 : 2) : 0] }, m < 5 ? `−${5 - m}m` : "now"));
  for (const l of lines) {
    let d = "", pt = -1e9;
    for (const [t, v] of l.pts) { d += (t - pt > 5 ? "M" : "L") + x(t).toFixed(1) + " " + y(v).toFixed(1); pt = t; } // gap > 5 s: new segment
    kids.push(h("path", { class: "ln", d: d || "M0 0", stroke: l.e.color, "data-follower-id": l.id, "data-points": l.pts.length }));
    const p = l.pts[l.pts.length - 1];
    if (p) kids.push(h("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: l.e.color }));
  }
  if (!lines.length) kids.push(h("text", { class: "ax", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no follower measurements"));
  kids.push(h("line", { id: "xhair", class: "xhair", x1: -9, x2: -9, y1: T, y2: H - B }));
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren(...kids);
  chart = { L, R, W, t0, lines };
  $("latency-legend").replaceChildren(...lines.map((l) => h("span", present.has(l.id) ? null : "muted", sw(l.e.color), l.e.name, " ",
    h("b", null, l.pts.length ? tick(l.pts[l.pts.length - 1][1]) : "–"), " ms")));
  hover(hoverX);
}
function hover(px) { // tooltip with every line's nearest value
  const tip = $("latency-tip"), c = chart, xl = $("xhair");
  tip.hidden = !c || px == null || px < c.L || px > c.W - c.R;
  xl?.setAttribute("x1", tip.hidden ? -9 : px);
  xl?.setAttribute("x2", tip.hidden ? -9 : px);
  if (tip.hidden) return;
  const t = c.t0 + ((px - c.L) / (c.W - c.L - c.R)) * WIN, rows = [];
  for (const l of c.lines) {
    const p = l.pts.reduce((b, p) => (!b || Math.abs(p[0] - t) < Math.abs(b[0] - t) ? p : b), null);
    if (p && Math.abs(p[0] - t) < 5) rows.push(h("div", null, sw(l.e.color), l.e.name + " ", h("b", null, tick(p[1]) + " ms")));
  }
  tip.replaceChildren(h("div", "muted", clock(t)), ...rows);
  tip.style.left = Math.min(px + 12, c.W - 150) + "px";
}
$("latency-chart").addEventListener("mousemove", (e) => {
  const r = e.currentTarget.getBoundingClientRect();
  hover((hoverX = ((e.clientX - r.left) / r.width) * (chart?.W || 1)));
});
$("latency-chart").addEventListener("mouseleave", () => hover((hoverX = null)));

// ---- throughput and latency ----
const series = new Map(); // name -> Ring
const ser = (k) => series.get(k) || series.set(k, new Ring()).get(k);
const hh = {}; // name -> cumulative histogram snapshots of the last ~10 s
let prev = null;
// Prometheus' histogram_quantile over non-cumulative bucket counts (the last one is +Inf)
function quantile(q, bounds, counts) {
  const total = counts.reduce((a, b) => a + b, 0), rank = q * total;
  if (!(total > 0)) return null;
  for (let i = 0, cum = 0; i < counts.length; i++) {
    const before = cum;
    cum += counts[i];
    if (cum >= rank && counts[i] > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1] ?? null;
      const lo = i ? bounds[i - 1] : 0;
      return lo + (bounds[i] - lo) * ((rank - before) / counts[i]);
    }
  }
  return bounds[bounds.length - 1] ?? null;
}
function windowed(name, g, now) {
  const hist = hh[name] || (hh[name] = []);
  if (!Array.isArray(g?.counts) || !Array.isArray(g.bounds)) return (hist.length = 0), null;
  const cur = { t: now, b: g.bounds, c: g.counts, s: +g.sum || 0 }, last = hist[hist.length - 1];
  if (last && (last.c.length !== cur.c.length || cur.c.some((v, i) => v < last.c[i]))) hist.length = 0; // reset
  if (!hist.length || now > last.t) hist.push(cur);
  while (hist.length > 2 && hist[1].t <= now - 10) hist.shift();
  const base = hist[0];
  if (now <= base.t) return null;
  const dc = cur.c.map((v, i) => v - base.c[i]), n = dc.reduce((a, b) => a + b, 0);
  return { p50: quantile(0.5, cur.b, dc), p99: quantile(0.99, cur.b, dc), rate: n / (now - base.t), mean: n ? (cur.s - base.s) / n : null };
}
function spark(now, lines) { // lines: [[points, class]]; x fills the width until 5 min of history exist
  const W = 200, H = 36, all = lines.flatMap((l) => l[0]);
  const t0 = Math.max(now - WIN, Math.min(now - 30, ...all.map((p) => p[0]))), max = Math.max(0, ...all.map((p) => p[1])) * 1.1 || 1;
  return h("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" }, lines.map(([pts, cls]) => h("polyline", { class: cls,
    "vector-effect": "non-scaling-stroke", points: pts.map(([t, v]) => (((t - t0) / (now - t0)) * W).toFixed(1) + "," + (H - 1 - (v / max) * (H - 3)).toFixed(1)).join(" ") })));
}
const tile = (label, value, unit, sp, sub, cls) => h("div", "tile " + (cls || ""), h("div", "tl", label), h("div", "tv", value, h("small", null, unit)), sp, h("div", { class: "ts muted", title: sub }, sub));
const RATES = [["proposals_committed", "Committed/s"], ["proposals_applied", "Applied/s"], ["proposals_failed", "Failed proposals/s"],
  ["puts", "Put/s"], ["ranges", "Range/s"], ["txns", "Txn/s"], ["deletes", "Delete/s"]];
function rates(d, now) {
  const c = d.counters || {}, tiles = [];
  if (prev && now > prev.t) for (const [k] of RATES) {
    const dv = c[k] - prev.c[k];
    if (dv >= 0) ser(k).push(now, dv / (now - prev.t)); // negative (a restart) or NaN: skipped
  }
  if (!prev || now > prev.t) prev = { t: now, c };
  for (const [k, label] of RATES) {
    const pts = ser(k).since(now - WIN), v = pts.length ? pts[pts.length - 1][1] : null, failed = k === "proposals_failed";
    tiles.push(tile(label, fmtR(v), "/s", spark(now, [[pts, "s1"]]), "total " + fmtN(c[k]) + (failed ? " · pending " + fmtN(c.proposals_pending) : ""), failed && v > 0 && "bad"));
  }
  for (const [k, label] of [["request", "Request latency"], ["fsync", "WAL fsync"]]) {
    const w = windowed(k, d.histograms?.[k], now);
    if (ok(w?.p50)) ser(k + "50").push(now, w.p50);
    if (ok(w?.p99)) ser(k + "99").push(now, w.p99);
    tiles.push(tile(label, [h("span", "q", "p50 "), fmtMs(w?.p50), h("span", "q", " p99 "), fmtMs(w?.p99)], " ms",
      spark(now, [[ser(k + "50").since(now - WIN), "s2"], [ser(k + "99").since(now - WIN), "s1"]]),
      w ? `${fmtR(w.rate)}/s · mean ${fmtMs(w.mean)} ms` : "collecting…", "wide"));
  }
  $("rates").replaceChildren(...tiles);
}

// ---- key browser (etcd's JSON API: keys and values are base64 bytes, int64s are strings) ----
const enc = new TextEncoder(), dec = new TextDecoder("utf-8", { fatal: false }), strict = new TextDecoder("utf-8", { fatal: true });
const bin = (u8) => { let s = ""; for (const b of u8) s += String.fromCharCode(b); return s; };
const b64 = (u8) => btoa(bin(u8));
const unb64 = (s) => Uint8Array.from(atob(s || ""), (c) => c.charCodeAt(0));
const txt = (u8) => dec.decode(u8);
function prefixEnd(p) { // clientv3.GetPrefixRangeEnd
  for (let i = p.length - 1; i >= 0; i--) if (p[i] < 0xff) { const e = p.slice(0, i + 1); e[i]++; return e; }
  return new Uint8Array([0]);
}
const Z = b64(new Uint8Array([0]));
const rangeOf = (p) => (p.length ? { key: b64(p), range_end: b64(prefixEnd(p)) } : { key: Z, range_end: Z });
const K = { prefix: new Uint8Array(0), search: null, sel: null, seq: 0, sig: null, last: null, watch: null, events: [], timer: 0 };
const cur = () => K.search || K.prefix;

function go(p) { K.prefix = p; K.search = null; $("key-search").value = ""; navigated(); }
function navigated() {
  K.sig = K.last = null;
  crumbs();
  $("key-list").replaceChildren(h("p", "muted", "loading…"));
  refreshKeys();
  if ($("watch-toggle").checked) startWatch();
}
function crumbs() {
  const a = (label, p, cls) => h("a", { href: "#", class: cls, onclick: prevent(() => go(p)) }, label), out = [];
  if (K.search) out.push(h("span", "muted", "every key under "), h("code", null, txt(K.search)), " ", a("× back", K.prefix));
  else {
    out.push(a("(all keys)", new Uint8Array(0)));
    for (let i = 0, s = 0; i < K.prefix.length; i++) if (K.prefix[i] === 0x2f) {
      out.push(h("span", "muted", " › "), a(txt(K.prefix.slice(s, i + 1)), K.prefix.slice(0, i + 1), "mono"));
      s = i + 1;
    }
  }
  $("crumbs").replaceChildren(...out);
}
async function refreshKeys() {
  if (locked()) return;
  const p = cur(), flat = !!K.search, seq = ++K.seq;
  let j;
  try { j = await api("/v3/kv/range", { ...rangeOf(p), keys_only: true, limit: 5000 }); } catch (e) {
    if (seq === K.seq) $("key-foot").textContent = "listing failed: " + e.message;
    return;
  }
  const kvs = j?.kvs || [], sig = kvs.map((kv) => kv.key + kv.mod_revision).join() + j?.count;
  if (seq !== K.seq || sig === K.sig) return;
  K.sig = sig;
  const keys = [], folders = new Map();
  for (const kv of kvs) {
    const k = unb64(kv.key), i = flat ? -1 : k.indexOf(0x2f, p.length); // another "/" after the prefix: a folder
    if (i < 0) { keys.push({ k, kv }); continue; }
    const f = k.slice(0, i + 1), id = bin(f);
    if (folders.has(id)) folders.get(id).n++; else folders.set(id, { f, n: 1 });
  }
  K.last = { p, flat, items: [...folders.values(), ...keys], n: kvs.length, count: j?.count, more: j?.more };
  list();
}
function list() {
  const L = K.last;
  if (!L) return;
  const rows = L.items.map((it) => {
    if (it.f) return h("div", { class: "row folder", "data-folder": txt(it.f), title: txt(it.f), onclick: () => go(it.f) },
      h("span", "ic", "▸"), h("span", "nm", txt(it.f.slice(L.p.length))), h("span", "meta", it.n + (L.more ? "+" : "") + (it.n > 1 ? " keys" : " key")));
    const full = txt(it.k);
    return h("div", { class: "row key" + (bin(it.k) === K.sel ? " sel" : ""), "data-key": full, title: full, onclick: () => showKey(it.k) },
      h("span", "ic", "·"), h("span", "nm", (L.flat ? full : txt(it.k.slice(L.p.length))) || "(the prefix itself)"),
      h("span", "meta", `v${it.kv.version || 0} · rev ${it.kv.mod_revision || 0}`));
  });
  $("key-list").replaceChildren(...(rows.length ? rows : [h("p", "muted", "no keys")]));
  $("key-foot").textContent = L.more ? `first ${L.n} of ${fmtN(L.count)} keys: narrow the prefix` : fmtN(L.n) + (L.n === 1 ? " key" : " keys");
}
const hex = (u8) => Array.from(u8, (b, i) => b.toString(16).padStart(2, "0") + (i % 16 === 15 ? "\n" : " ")).join("");
async function showKey(k) {
  const id = (K.sel = bin(k)), pane = $("key-value");
  list();
  let j;
  try { j = await api("/v3/kv/range", { key: b64(k) }); } catch (e) { return pane.replaceChildren(h("p", "bad", "read failed: " + e.message)); }
  const kv = j?.kvs?.[0];
  if (K.sel !== id) return;
  if (!kv) return pane.replaceChildren(h("code", null, txt(k)), h("p", "muted", "not found (deleted?)"));
  const v = unb64(kv.value), max = 65536;
  let body, isHex = false, lease = "none";
  try { body = strict.decode(v.slice(0, max)); } catch { body = hex(v.slice(0, max / 8)); isHex = true; }
  if (ok(kv.lease) && kv.lease !== "0") lease = BigInt(kv.lease).toString(16);
  const m = (l, val) => h("span", null, h("span", "muted", l + " "), h("b", null, val));
  pane.replaceChildren(h("div", "kname mono", txt(k)),
    h("div", "kmeta", m("version", kv.version || "0"), m("create_rev", kv.create_revision || "0"), m("mod_rev", kv.mod_revision || "0"), m("lease", lease), m("size", fmtB(v.length)), isHex && m("shown as", "hex")),
    h("pre", "val", body), v.length > (isHex ? max / 8 : max) ? h("p", "muted", "truncated") : "");
}
$("key-search").addEventListener("keydown", (e) => {
  if (e.key !== "Enter") return;
  e.preventDefault();
  K.search = e.target.value ? enc.encode(e.target.value) : null;
  navigated();
});
$("watch-toggle").addEventListener("change", (e) => (e.target.checked ? startWatch() : stopWatch()));

// ---- watch: a streamed response of newline-delimited {"result": ...} objects ----
function stopWatch() {
  const w = K.watch;
  K.watch = null;
  if (w) { clearTimeout(w.retry); w.ac.abort(); }
  $("watch-status").textContent = "";
}
const wstat = (w, s, cls) => { if (K.watch === w) { $("watch-status").textContent = s; $("watch-status").className = cls; } };
async function startWatch() {
  stopWatch();
  const p = cur(), w = (K.watch = { ac: new AbortController(), p, retry: 0 }), tok = token;
  wstat(w, "connecting…", "muted");
  try {
    const r = await fetch("/v3/watch", { method: "POST", headers: hdrs(), body: JSON.stringify({ create_request: rangeOf(p) }), signal: w.ac.signal });
    if (r.status === 401) { needLogin(tok); throw new AuthError("authentication required"); }
    const rd = r.body.getReader(), td = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await rd.read();
      buf += done ? "\n" : td.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) { const line = buf.slice(0, i).trim(); buf = buf.slice(i + 1); if (line) watchMsg(JSON.parse(line), w, tok); }
      if (done) throw new Error(r.ok ? "watch ended" : "HTTP " + r.status);
    }
  } catch (e) {
    w.ac.abort();
    if (K.watch !== w) return;
    wstat(w, e instanceof AuthError ? "" : e.message + ", reconnecting", "bad");
    if (!(e instanceof AuthError)) w.retry = setTimeout(() => K.watch === w && startWatch(), 2000);
  }
}
function watchMsg(m, w, tok) {
  if (K.watch !== w) return;
  if (isAuth(0, m)) { needLogin(tok); throw new AuthError("authentication required"); }
  if (m.error) throw new Error(errText(m, m.error.http_code));
  const r = m.result || {};
  if (r.created) wstat(w, `watching ${w.p.length ? txt(w.p) : "all keys"} (id ${r.watch_id || 0})`, "good");
  if (r.canceled) throw new Error("watch canceled " + (r.cancel_reason || ""));
  if (!r.events?.length) return;
  for (const ev of r.events) {
    const kv = ev.kv || {}, k = unb64(kv.key), type = ev.type || "PUT"; // PUT is the zero enum value: omitted
    K.events.unshift({ t: Date.now() / 1000, type, key: txt(k), rev: kv.mod_revision || "0", val: type === "PUT" ? txt(unb64(kv.value)).slice(0, 80) : "" });
    if (bin(k) === K.sel) showKey(k);
  }
  K.events.length = Math.min(K.events.length, 50);
  $("watch-events").replaceChildren(...K.events.map((e) => h("li", { class: e.type === "DELETE" ? "del" : "put", title: e.key },
    h("time", null, clock(e.t)), h("b", null, e.type), h("span", "mono ek", e.key), h("span", "meta", "rev " + e.rev), e.val && h("span", "ev mono", e.val))));
  clearTimeout(K.timer);
  K.timer = setTimeout(refreshKeys, 150);
}

authUI();
crumbs();
poll();
refreshKeys();
setInterval(refreshKeys, 2000);
})();
