// The live board: rows from /api/board, then updated in place from the push stream
// (/api/stream?board=1, Server-Sent Events). The columns and the "stands out" rules are computed
// by the server (iopv/engine/view.py); this script only formats them, advances the ages between
// boundaries, and marks a row late once the server's late_after_ns has passed.
"use strict";

const state = { rows: new Map(), names: {}, decimals: 4, offsetMs: 0, selected: null, chart: null, series: null };
const ALERTS = ["halted", "degraded", "recovering", "stale", "late"];
const tbody = document.querySelector("#board tbody");

function fmt(value, digits, signed) {
  if (value === null || value === undefined) return "";
  const text = Number(value).toFixed(digits);
  return signed && value > 0 ? "+" + text : text;
}

function serverNowNs() { return (Date.now() + state.offsetMs) * 1e6; }

function cell(tr, cls, text, numeric) {
  let td = tr.querySelector("td." + cls);
  if (!td) {
    td = document.createElement("td");
    td.className = cls + (numeric ? " num" : "");
    tr.appendChild(td);
  }
  if (td.textContent !== text) td.textContent = text;
  return td;
}

function alertsOf(row) {
  const alerts = row.alerts.slice();
  if (!alerts.includes("late") && serverNowNs() > row.late_after_ns) alerts.push("late");
  return alerts;
}

function render(row, fresh) {
  let tr = tbody.querySelector(`tr[data-fund="${CSS.escape(row.fund)}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.fund = row.fund;
    tr.addEventListener("click", () => select(row.fund));
    tbody.appendChild(tr);
  }
  tr.dataset.ts = String(row.ts);
  cell(tr, "fund", row.fund);
  cell(tr, "name", state.names[row.fund] || "").title = state.names[row.fund] || "";
  cell(tr, "iopv", fmt(row.iopv, state.decimals), true);
  const change = cell(tr, "change", fmt(row.change, state.decimals, true), true);
  const bps = cell(tr, "change-bps", fmt(row.change_bps, 1, true), true);
  for (const td of [change, bps]) {
    td.classList.toggle("up", row.change > 0);
    td.classList.toggle("down", row.change < 0);
  }
  cell(tr, "market", fmt(row.market_price, state.decimals), true);
  cell(tr, "premium", fmt(row.premium_bps, 1, true), true);
  cell(tr, "status", row.status || "");
  cell(tr, "coverage", row.coverage === null || row.coverage === undefined ? "" : (row.coverage * 100).toFixed(1) + "%", true);
  ageAndAlerts(tr, row);
  if (fresh) {
    tr.classList.remove("flash");
    void tr.offsetWidth;  // restart the animation
    tr.classList.add("flash");
  }
}

function ageAndAlerts(tr, row) {
  cell(tr, "age", Math.max(0, (serverNowNs() - row.ts) / 1e9).toFixed(1), true);
  const alerts = alertsOf(row);
  cell(tr, "alerts", alerts.join(" "));
  for (const name of ALERTS) tr.classList.toggle("alert-" + name, alerts.includes(name));
}

function apply(board, fresh) {
  state.offsetMs = board.now_ns / 1e6 - Date.now();
  if (board.names) state.names = board.names;
  if (board.decimals !== undefined) state.decimals = board.decimals;
  let latest = 0;
  for (const row of board.rows) {
    state.rows.set(row.fund, row);
    render(row, fresh);
    latest = Math.max(latest, row.ts);
    if (fresh && row.fund === state.selected) appendPoint(row);
  }
  if (latest) {
    document.getElementById("boundary").textContent =
      "values at " + new Date(latest / 1e6).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
}

async function load() {
  const response = await fetch("/api/board");
  apply(await response.json(), false);
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/stream?board=1");
  source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "up"; load(); });
  source.addEventListener("error", () => { conn.textContent = "reconnecting"; conn.className = "down"; });
  source.addEventListener("board", (event) => apply(JSON.parse(event.data), true));
}

// -- the chart of the selected fund's values today ------------------------------------------

function startOfTodayMs() {
  const now = new Date();
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
}

async function select(fund) {
  state.selected = fund;
  for (const tr of tbody.querySelectorAll("tr.selected")) tr.classList.remove("selected");
  const tr = tbody.querySelector(`tr[data-fund="${CSS.escape(fund)}"]`);
  if (tr) tr.classList.add("selected");
  document.getElementById("chart-title").textContent = `${fund} today (UTC), from the Redis history`;
  const response = await fetch(`/api/history/${encodeURIComponent(fund)}?from=${startOfTodayMs()}`);
  const records = response.ok ? await response.json() : [];
  if (state.selected !== fund) return;
  state.series = [records.map((r) => r.ts / 1e9), records.map((r) => r.iopv)];
  drawChart(fund);
}

function drawChart(fund) {
  const box = document.getElementById("chart");
  if (state.chart) state.chart.destroy();
  const opts = {
    width: Math.max(400, box.clientWidth || 480), height: 320,
    scales: { x: { time: true } },
    series: [{}, { label: fund, stroke: "#3a7bd5", width: 1.5, value: (u, v) => fmt(v, state.decimals) }],
    axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => fmt(v, state.decimals)) }],
  };
  state.chart = new uPlot(opts, state.series, box);
  box.dataset.points = String(state.series[0].length);
}

function appendPoint(row) {
  if (!state.series || !state.chart) return;
  const x = row.ts / 1e9;
  const xs = state.series[0];
  if (xs.length && xs[xs.length - 1] >= x) return;
  xs.push(x);
  state.series[1].push(row.iopv);
  state.chart.setData(state.series);
  document.getElementById("chart").dataset.points = String(xs.length);
}

setInterval(() => {
  for (const [fund, row] of state.rows) {
    const tr = tbody.querySelector(`tr[data-fund="${CSS.escape(fund)}"]`);
    if (tr) ageAndAlerts(tr, row);
  }
}, 1000);

load().then(connect);
