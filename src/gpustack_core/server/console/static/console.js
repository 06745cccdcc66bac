// gpustack-core console helpers: the public API with the session cookie, DOM building, SVG charts.
// No framework and no build step: this file is served as it is.
"use strict";
const C = (() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  class ApiError extends Error {
    constructor(status, detail) { super(C.errorText(detail)); this.status = status; this.detail = detail; }
  }

  async function api(method, path, body, options = {}) {
    const headers = { "X-CSRF-Token": csrf() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body), signal: options.signal });
    if (r.status === 401 && !options.noRedirect) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new ApiError(401, "session ended");
    }
    if (options.raw) return r;
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!r.ok) {
      const detail = data && data.detail !== undefined ? data.detail : (data && data.error ? data.error.message : data);
      throw new ApiError(r.status, detail);
    }
    return data;
  }

  function errorText(detail) {
    if (Array.isArray(detail)) return detail.map(d => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
    if (detail && typeof detail === "object") return JSON.stringify(detail);
    return String(detail);
  }

  // h("div", {class: "x", onclick: f}, "text", child, [children])
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    const add = c => {
      if (c === null || c === undefined || c === false) return;
      if (Array.isArray(c)) c.forEach(add);
      else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    };
    children.forEach(add);
    return el;
  }

  function fill(target, ...children) {
    const el = typeof target === "string" ? document.getElementById(target) : target;
    el.replaceChildren();
    children.flat().forEach(c => { if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c)); });
    return el;
  }

  function table(columns, rows, empty = "nothing yet") {
    if (!rows.length) return h("p", { class: "muted" }, empty);
    return h("div", { class: "table-wrap" }, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, columns.map(c => h("th", { scope: "col", class: c.cls }, c.label)))),
      h("tbody", {}, rows.map(r => h("tr", {}, columns.map(c => h("td", { class: c.cls, "data-label": c.label }, c.cell(r))))))));
  }

  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    let i = 0; let v = Number(n);
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i === 0 ? 0 : 1)} ${UNITS[i]}`;
  }
  function age(iso) {
    if (!iso) return "–";
    const s = Math.max(0, (Date.now() - Date.parse(iso.endsWith("Z") || iso.includes("+") ? iso : iso + "Z")) / 1000);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }
  const state = s => h("span", { class: `state state-${s}` }, s);

  async function copy(text, button) {
    try { await navigator.clipboard.writeText(text); }
    catch (e) {
      const area = h("textarea", {}, text); document.body.append(area); area.select();
      document.execCommand("copy"); area.remove();
    }
    if (button) { const old = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = old; }, 1500); }
  }
  function copyable(text, label = "Copy") {
    const button = h("button", { type: "button", "aria-label": `${label}: copy to clipboard` }, "Copy");
    button.addEventListener("click", () => copy(text, button));
    return h("div", { class: "copyable" }, h("pre", {}, text), button);
  }

  // Call fn now and every ms while the page stays open; errors show in the element "status".
  function poll(fn, ms) {
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      try { await fn(); } catch (e) { showError(e); }
      if (!stopped) setTimeout(tick, document.hidden ? ms * 4 : ms);
    };
    tick();
    return () => { stopped = true; };
  }

  function showError(e, where = "status") {
    const el = document.getElementById(where);
    if (el) fill(el, h("p", { class: "error", role: "alert" }, e.message || String(e)));
    else console.error(e);
  }
  function clearError(where = "status") { const el = document.getElementById(where); if (el) el.replaceChildren(); }

  // ------------------------------------------------------------------ SVG charts
  const NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    kids.forEach(k => el.append(k instanceof Node ? k : document.createTextNode(String(k))));
    return el;
  }
  const PALETTE = ["#2458d6", "#18794e", "#c2410c", "#7c3aed", "#b91c1c", "#0e7490", "#a16207", "#be185d"];

  // Bars per label, stacked by series: data = {labels: [...], series: [{name, values: [...]}]}
  function barChart(data, title) {
    const W = 640, H = 220, L = 48, B = 40, T = 10;
    const totals = data.labels.map((_, i) => data.series.reduce((a, se) => a + (se.values[i] || 0), 0));
    const max = Math.max(1, ...totals);
    const bw = (W - L - 10) / Math.max(1, data.labels.length);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
    svg.append(s("title", {}, title));
    for (let g = 0; g <= 4; g++) {
      const y = T + (H - T - B) * (1 - g / 4);
      svg.append(s("line", { x1: L, x2: W, y1: y, y2: y, stroke: "currentColor", "stroke-opacity": 0.12 }));
      svg.append(s("text", { x: L - 4, y: y + 4, "text-anchor": "end" }, short(max * g / 4)));
    }
    data.labels.forEach((label, i) => {
      let y0 = H - B;
      data.series.forEach((se, k) => {
        const v = se.values[i] || 0; const hgt = (H - T - B) * v / max;
        const rect = s("rect", { x: L + i * bw + bw * 0.15, y: y0 - hgt, width: bw * 0.7, height: hgt, fill: PALETTE[k % PALETTE.length] });
        rect.append(s("title", {}, `${label} ${se.name}: ${v}`));
        svg.append(rect); y0 -= hgt;
      });
      if (data.labels.length <= 16 || i % Math.ceil(data.labels.length / 16) === 0)
        svg.append(s("text", { x: L + i * bw + bw / 2, y: H - B + 14, "text-anchor": "middle" }, label));
    });
    data.series.forEach((se, k) => {
      svg.append(s("rect", { x: L + k * 130, y: H - 14, width: 10, height: 10, fill: PALETTE[k % PALETTE.length] }));
      svg.append(s("text", { x: L + k * 130 + 14, y: H - 5 }, se.name));
    });
    return svg;
  }
  function short(v) {
    if (v >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return Math.round(v * 10) / 10;
  }

  // points = [{x, y, label}]
  function scatter(points, title) {
    const W = 480, H = 360, P = 30;
    const xs = points.map(p => p.x), ys = points.map(p => p.y);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const sx = v => P + (W - 2 * P) * (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0));
    const sy = v => H - P - (H - 2 * P) * (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0));
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
    svg.append(s("title", {}, title));
    svg.append(s("rect", { x: P, y: P, width: W - 2 * P, height: H - 2 * P, fill: "none", stroke: "currentColor", "stroke-opacity": 0.15 }));
    points.forEach((p, i) => {
      const g = s("g", { class: "point" });
      g.append(s("circle", { cx: sx(p.x), cy: sy(p.y), r: 6, fill: PALETTE[i % PALETTE.length] }));
      const right = sx(p.x) > W / 2;  // labels point inwards so that they stay inside the chart
      g.append(s("text", { x: sx(p.x) + (right ? -9 : 9), y: sy(p.y) + 4, "text-anchor": right ? "end" : "start" },
        p.label.length > 28 ? p.label.slice(0, 27) + "…" : p.label));
      svg.append(g);
    });
    return svg;
  }

  // ------------------------------------------------------------------ maths for embeddings
  function cosine(a, b) {
    let d = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return d / (Math.sqrt(na) * Math.sqrt(nb) || 1);
  }
  // 2-D PCA by power iteration on the centred data (with deflation for the 2nd component).
  function pca2(vectors) {
    const n = vectors.length, d = vectors[0].length;
    const mean = new Array(d).fill(0);
    vectors.forEach(v => v.forEach((x, j) => { mean[j] += x / n; }));
    const X = vectors.map(v => v.map((x, j) => x - mean[j]));
    const comps = [];
    for (let c = 0; c < 2; c++) {
      let w = new Array(d).fill(0).map((_, j) => Math.sin(j + 1 + c * 7));
      for (let it = 0; it < 100; it++) {
        const scores = X.map(r => r.reduce((a, x, j) => a + x * w[j], 0));
        const nw = new Array(d).fill(0);
        X.forEach((r, i) => r.forEach((x, j) => { nw[j] += x * scores[i]; }));
        comps.forEach(pc => { const dot = nw.reduce((a, x, j) => a + x * pc[j], 0); pc.forEach((x, j) => { nw[j] -= dot * x; }); });
        const norm = Math.sqrt(nw.reduce((a, x) => a + x * x, 0)) || 1;
        w = nw.map(x => x / norm);
      }
      comps.push(w);
    }
    return X.map(r => comps.map(pc => r.reduce((a, x, j) => a + x * pc[j], 0)));
  }

  function theme() {
    const root = document.documentElement;
    const saved = localStorage.getItem("theme");
    if (saved) root.dataset.theme = saved;
    const button = document.getElementById("theme-toggle");
    if (button) button.addEventListener("click", () => {
      const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      localStorage.setItem("theme", root.dataset.theme);
    });
    const logout = document.getElementById("logout");
    if (logout) logout.addEventListener("click", async () => {
      try { await api("DELETE", "/api/v1/auth/session", undefined, { noRedirect: true }); } catch (e) { /* already gone */ }
      location.href = "/login";
    });
  }
  document.addEventListener("DOMContentLoaded", theme);

  return { api, ApiError, errorText, h, fill, table, bytes, age, state, copy, copyable, poll, showError, clearError,
           barChart, scatter, cosine, pca2 };
})();
