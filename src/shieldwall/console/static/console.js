// The shieldwall console: polls /console/api/live once a second and draws it.
// No build step, no framework: uPlot (vendored) for the charts, the DOM for the rest.
"use strict";
(function () {
  const OUTCOME_COLORS = {
    allowed: "#3fb950", limited: "#d29922", challenged: "#a371f7", solved: "#56d4dd",
    blocked: "#f85149", shed: "#ff9f43", stale: "#8b98a8", error: "#ff6b9a", shield: "#5c6b7a",
  };
  const CLASS_COLORS = {customer: "#3fb950", verified: "#56d4dd", unknown: "#d29922",
                        suspect: "#f85149", "-": "#5c6b7a"};
  let csrf = "";
  let charts = {};
  let banned = new Set();

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const fmt = (n) => n == null ? "–" : (n >= 100 ? Math.round(n).toString() :
    (Math.round(n * 10) / 10).toString());
  const secs = (s) => s == null ? "–" : (s < 1 ? Math.round(s * 1000) + " ms" : fmt(s) + " s");
  const hms = (t) => new Date(t * 1000).toISOString().slice(11, 19);
  const dur = (s) => s >= 3600 ? fmt(s / 3600) + " h" : s >= 60 ? fmt(s / 60) + " min" : fmt(s) + " s";

  function flash(text, bad) {
    const f = $("flash");
    f.textContent = text; f.hidden = false; f.className = bad ? "flash err" : "flash";
    clearTimeout(flash.t); flash.t = setTimeout(() => { f.hidden = true; }, 6000);
  }

  async function post(path, body) {
    const r = await fetch(path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body)});
    let data = {};
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (r.status === 401) { location.reload(); return null; }
    if (!r.ok && r.status !== 404) { flash(path + ": " + (data.error || r.status), true); return null; }
    return data;
  }

  async function setMode(mode) {
    const d = await post("/api/mode", {mode: mode});
    if (d) { flash("mode: " + d.mode + (d.pinned ? " (pinned)" : " (auto)")); refresh(); }
  }
  async function ban(value) {
    const ttl = Number($("ban-ttl").value);
    const d = await post("/api/ban", {value: value, ttl: ttl, reason: "console"});
    if (d) { flash("banned " + d.banned + " for " + dur(d.ttl)); refresh(); }
  }
  async function unban(value) {
    const d = await post("/api/unban", {value: value});
    if (d) { flash(d.found ? "unbanned " + value : value + " was not banned"); refresh(); }
  }

  function chart(id, names, colors, logY) {
    const node = $(id);
    const opts = {
      width: Math.max(300, node.clientWidth || 420), height: 190,
      scales: {x: {time: true}, y: logY ? {distr: 3} : {range: (u, min, max) => [0, Math.max(1, max * 1.1)]}},
      axes: [{stroke: "#8b98a8", grid: {stroke: "#2a3441"}},
             {stroke: "#8b98a8", grid: {stroke: "#2a3441"}, size: 56}],
      series: [{}].concat(names.map((n) => ({label: n, stroke: colors[n] || "#ccc", width: 1.5,
                                              spanGaps: !!logY}))),
      legend: {live: false},
    };
    const data = [[]].concat(names.map(() => []));
    return new uPlot(opts, data, node);
  }

  function ensureCharts(s) {
    if (charts.outcomes) return;
    charts.outcomes = chart("chart-outcomes", Object.keys(s.outcomes), OUTCOME_COLORS, false);
    charts.classNames = Object.keys(s.classes);
    charts.classes = chart("chart-classes", charts.classNames, CLASS_COLORS, false);
    charts.latency = chart("chart-latency", ["p50", "p90", "p99"],
                           {p50: "#3fb950", p90: "#d29922", p99: "#f85149"}, true);
  }

  function drawCharts(s) {
    ensureCharts(s);
    charts.outcomes.setData([s.t].concat(Object.keys(s.outcomes).map((k) => s.outcomes[k])));
    charts.classes.setData([s.t].concat(charts.classNames.map((k) => s.classes[k] || s.t.map(() => 0))));
    charts.latency.setData([s.t, s.p50, s.p90, s.p99]);
  }

  function drawMode(m) {
    const mode = $("mode");
    mode.textContent = (m.mode || "?").replace("_", " ");
    mode.className = "mode " + (m.mode || "");
    mode.dataset.mode = m.mode || "";
    mode.dataset.pinned = m.pinned ? "1" : "0";
    $("mode-reason").textContent = m.reason;
    const last = m.audit && m.audit[0];
    $("mode-reason").title = last ? last.iso + " " + last.who + ": " + last.text : "";
    for (const b of $("mode-switch").querySelectorAll("button")) {
      const on = m.pinned ? b.dataset.mode === m.mode : b.dataset.mode === "auto";
      b.classList.toggle("on", on);
    }
  }

  function drawVerdict(v) {
    $("verdict").textContent = v.verdict || "off";
    $("verdict").dataset.verdict = v.verdict || "";
    $("verdict-kind").textContent = v.kind ? "(" + v.kind + ")" : "";
    $("verdict-conf").textContent = v.confidence != null ? "confidence " + v.confidence : "";
    $("verdict-since").textContent = v.since ? "since " + v.since : "";
    const ul = $("evidence"); ul.replaceChildren();
    for (const e of (v.evidence || []).slice(0, 6)) ul.append(el("li", {}, e));
  }

  function drawRates(s, refused) {
    const n = s.t.length;
    const last = (arr) => arr[n - 1] || 0;
    $("rps-total").textContent = fmt(last(s.total));
    const chips = $("rps-outcomes"); chips.replaceChildren();
    for (const [k, arr] of Object.entries(s.outcomes)) {
      chips.append(el("span", {"data-outcome": k}, k + " ", el("b", {}, fmt(last(arr)))));
    }
    chips.append(el("span", {"data-outcome": "refused_at_connect"}, "refused at connect ",
                   el("b", {}, fmt(refused.rejected))));
    const lat = $("latency"); lat.replaceChildren();
    for (const q of ["p50", "p90", "p99"]) lat.append(el("span", {}, q + " ≤ ", el("b", {}, secs(s.latency_10s[q]))));
  }

  function drawFunnel(f) {
    const box = $("funnel"); box.replaceChildren();
    const w = f.last_60s || {issued: 0, solved: 0, failed: 0};
    box.append(el("span", {}, "issued ", el("b", {}, w.issued)), el("span", {}, "solved ", el("b", {}, w.solved)),
               el("span", {}, "failed ", el("b", {}, w.failed)),
               el("span", {}, "solve time ", el("b", {}, secs(f.solve_seconds_mean != null ? f.solve_seconds_mean : f.solve_seconds_mean_total))));
  }

  function drawTop(top) {
    for (const dim of ["address", "network", "agent", "path"]) {
      const t = $("top-" + dim); t.replaceChildren(el("tr", {}, el("th", {}, dim), el("th", {}, "req"),
                                                      el("th", {}, "refused"), el("th", {}, "")));
      for (const [key, n, refused] of top[dim] || []) {
        let act = "";
        if ((dim === "address" || dim === "network") && key !== "(other)") {
          act = banned.has(key) || banned.has(key + "/32")
            ? el("button", {class: "act unban", "data-value": key, onclick: () => unban(key)}, "unban")
            : el("button", {class: "act ban", "data-value": key, onclick: () => ban(key)}, "ban");
        }
        t.append(el("tr", {"data-value": key}, el("td", {class: "key", title: key}, key),
                    el("td", {class: "num"}, n), el("td", {class: "num"}, n ? Math.round(100 * refused / n) + "%" : ""),
                    el("td", {}, act)));
      }
    }
  }

  function drawBans(bans, lists, kernel) {
    banned = new Set(bans.map((b) => b.value));
    const t = $("bans");
    t.replaceChildren(el("tr", {}, el("th", {}, "value"), el("th", {}, "origin"), el("th", {}, "expires in"),
                         el("th", {}, "reason"), el("th", {}, "")));
    for (const b of bans) {
      t.append(el("tr", {"data-value": b.value}, el("td", {}, b.value), el("td", {}, b.origin),
                  el("td", {class: "num"}, dur(b.ttl)), el("td", {}, b.reason || ""),
                  el("td", {}, el("button", {class: "act unban", "data-value": b.value, onclick: () => unban(b.value)}, "unban"))));
    }
    const k = kernel.enabled ? "kernel (nftables): " + (kernel.elements || 0) + " in the set" :
      "kernel: nftables off";
    $("lists").textContent = "list (config): " + (lists.static_block || 0) + " blocked, " +
      (lists.static_allow || 0) + " allowed · run-time allows " + (lists.allows || 0) +
      " · suspects " + (lists.suspects || 0) + " · " + k;
  }

  function drawBackends(b) {
    const t = $("backends");
    t.replaceChildren(el("tr", {}, el("th", {}, "backend"), el("th", {}, "health"), el("th", {}, "in flight"),
                         el("th", {}, "req 60 s"), el("th", {}, "errors 60 s")));
    for (const r of b.backends) {
      t.append(el("tr", {}, el("td", {}, r.backend),
                  el("td", {class: r.healthy === false ? "down" : "healthy"}, r.healthy === false ? "down" : "up"),
                  el("td", {class: "num"}, r.in_flight), el("td", {class: "num"}, r.requests_60s),
                  el("td", {class: "num"}, r.errors_60s)));
    }
    $("failovers").textContent = "failovers: " + b.failovers_60s + " in 60 s, " + b.failovers_total +
      " in all · served stale: " + b.stale_total;
  }

  function drawWorkers(ws, store) {
    const t = $("workers");
    t.replaceChildren(el("tr", {}, el("th", {}, "worker"), el("th", {}, "pid"), el("th", {}, "req/s"),
                         el("th", {}, "mode"), el("th", {}, "verdict")));
    let total = 0;
    for (const w of ws) {
      total += w.rps;
      t.append(el("tr", {"data-worker": w.worker}, el("td", {}, w.worker), el("td", {}, w.pid),
                  el("td", {class: "num"}, fmt(w.rps)), el("td", {}, w.mode || ""), el("td", {}, w.verdict || "")));
    }
    t.append(el("tr", {class: "total"}, el("td", {}, "all"), el("td", {}, ""), el("td", {class: "num"}, fmt(total)),
                el("td", {}, ""), el("td", {}, "")));
    $("store").textContent = store ? "state store: " + store.kind + (store.healthy ? " (healthy)" : " (DOWN)") : "";
  }

  function drawTimeline(items) {
    const t = $("timeline");
    t.replaceChildren(el("tr", {}, el("th", {}, "time (UTC)"), el("th", {}, "what"), el("th", {}, ""),
                         el("th", {}, "who"), el("th", {}, "detail")));
    for (const e of items.slice(0, 60)) {
      t.append(el("tr", {"data-kind": e.kind}, el("td", {}, e.iso.slice(11, 19)), el("td", {}, e.kind),
                  el("td", {}, e.text), el("td", {}, e.who), el("td", {class: "key", title: e.detail}, e.detail)));
    }
  }

  async function refresh() {
    let r;
    try { r = await fetch("/console/api/live", {credentials: "same-origin"}); }
    catch (e) { $("updated").textContent = "no answer from the shield"; return; }
    if (r.status === 401) { location.reload(); return; }
    if (!r.ok) { $("updated").textContent = "HTTP " + r.status; return; }
    const d = await r.json();
    drawMode(d.mode); drawVerdict(d.verdict || {}); drawRates(d.series, d.refused);
    drawFunnel(d.funnel); drawBans(d.bans, d.lists, d.kernel); drawTop(d.top);
    drawBackends(d.backends); drawWorkers(d.workers, d.store); drawTimeline(d.timeline);
    drawCharts(d.series);
    $("updated").textContent = "updated " + hms(d.now);
    document.body.dataset.updated = String(d.now);
  }

  async function start() {
    const r = await fetch("/console/api/session", {credentials: "same-origin"});
    if (r.status === 401) { location.reload(); return; }
    const s = await r.json();
    csrf = s.csrf; $("operator").textContent = s.operator;
    for (const b of $("mode-switch").querySelectorAll("button")) b.onclick = () => setMode(b.dataset.mode);
    $("logout").onclick = async () => { await post("/console/logout", {}); location.reload(); };
    await refresh();
    setInterval(refresh, 1000);
  }
  start();
})();
