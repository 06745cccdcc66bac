// Playground: chat (streaming, 1-4 models side by side), embeddings, rerank, images, speech.
// Every request goes to the OpenAI-compatible /v1 routes with the session cookie.
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  const { h, fill, api } = C;
  let categories = {};  // served model name -> category
  const histories = {};  // model -> messages

  // ---------------------------------------------------------------- tabs
  document.querySelectorAll("[role=tab][data-tab]").forEach(tab => tab.addEventListener("click", () => {
    document.querySelectorAll("[role=tab][data-tab]").forEach(t => {
      t.setAttribute("aria-selected", t === tab ? "true" : "false");
      $(`panel-${t.dataset.tab}`).hidden = t !== tab;
    });
  }));

  async function loadModels() {
    const [models, deps] = await Promise.all([api("GET", "/v1/models"), api("GET", "/api/v1/deployments?limit=1000")]);
    categories = {};
    deps.items.forEach(d => { categories[d.spec.served_model_name || d.name] = d.spec.category; });
    const ids = models.data.map(m => m.id);
    const of = cats => ids.filter(id => cats.includes(categories[id] || "llm"));
    const chat = $("chat-models"), picked = [...chat.selectedOptions].map(o => o.value);
    fill(chat, of(["llm", "vlm"]).map((id, i) => h("option", { value: id, selected: picked.length ? picked.includes(id) : i === 0 }, id)));
    document.querySelectorAll(".model-select").forEach(sel => {
      const list = of([sel.dataset.category]), old = sel.value;
      fill(sel, list.length ? list.map(id => h("option", { value: id, selected: id === old }, id)) : [h("option", { value: "" }, `no running ${sel.dataset.category} deployment`)]);
      sel.closest("form").querySelectorAll("button[type=submit]").forEach(b => { b.disabled = !list.length; });
    });
  }

  // ---------------------------------------------------------------- chat
  function chatParams() {
    const stop = $("chat-stop").value.split(",").map(x => x.trim()).filter(Boolean);
    const extraText = $("chat-extra").value.trim();
    let extra = {};
    if (extraText) {
      try { extra = JSON.parse(extraText); } catch (e) { throw new Error(`extra body parameters: not JSON (${e.message})`); }
    }
    return { temperature: Number($("chat-temperature").value), top_p: Number($("chat-top-p").value),
             max_tokens: Number($("chat-max-tokens").value), ...(stop.length ? { stop } : {}), ...extra };
  }
  function chatMessages(model, text) {
    const sys = $("chat-system").value.trim();
    const past = histories[model] || [];
    return [...(sys ? [{ role: "system", content: sys }] : []), ...past, { role: "user", content: text }];
  }
  async function streamChat(model, text, box, stats) {
    const body = { model, messages: chatMessages(model, text), stream: true, stream_options: { include_usage: true }, ...chatParams() };
    const t0 = performance.now();
    let first = null, answer = "", usage = null, chunks = 0;
    const r = await api("POST", "/v1/chat/completions", body, { raw: true });
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error((e.error && e.error.message) || e.detail || `HTTP ${r.status}`); }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i); buf = buf.slice(i + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const j = JSON.parse(data);
          if (j.usage) usage = j.usage;
          const piece = j.choices && j.choices[0] && j.choices[0].delta && j.choices[0].delta.content;
          if (piece) { if (first === null) first = performance.now(); answer += piece; chunks++; box.textContent = answer; }
        }
      }
    }
    const end = performance.now();
    const completion = usage ? usage.completion_tokens : chunks;
    const genS = first === null ? 0 : (end - first) / 1000;
    fill(stats, `TTFT ${first === null ? "–" : Math.round(first - t0) + " ms"} · ${genS > 0 ? (completion / genS).toFixed(1) : "–"} tokens/s · ` +
      `${usage ? usage.prompt_tokens : "?"} prompt + ${completion} completion tokens`);
    stats.dataset.done = "true";
    histories[model] = [...(histories[model] || []), { role: "user", content: text }, { role: "assistant", content: answer }];
  }
  $("chat-form").addEventListener("submit", async ev => {
    ev.preventDefault(); C.clearError();
    const models = [...$("chat-models").selectedOptions].map(o => o.value).slice(0, 4);
    const text = $("chat-input").value.trim();
    if (!models.length) { C.showError(new Error("pick at least one running chat model")); return; }
    if (!text) return;
    try { chatParams(); } catch (e) { C.showError(e); return; }
    $("chat-send").disabled = true;
    const columns = models.map(m => {
      const box = h("div", { class: "answer", "aria-live": "polite" }), stats = h("p", { class: "stats" }, "waiting…");
      return { m, box, stats, el: h("article", { class: "panel", "aria-label": `answer of ${m}`, "data-model": m }, h("h2", {}, m), h("p", { class: "muted" }, text), box, stats) };
    });
    fill("chat-answers", columns.map(c => c.el));
    await Promise.all(columns.map(c => streamChat(c.m, text, c.box, c.stats).catch(e => { fill(c.stats, h("span", { class: "error" }, e.message)); })));
    $("chat-send").disabled = false;
  });
  $("chat-clear").addEventListener("click", () => { Object.keys(histories).forEach(k => delete histories[k]); fill("chat-answers"); });

  // ---------------------------------------------------------------- embeddings
  $("emb-form").addEventListener("submit", async ev => {
    ev.preventDefault(); C.clearError();
    const texts = $("emb-texts").value.split("\n").map(x => x.trim()).filter(Boolean);
    try {
      const r = await api("POST", "/v1/embeddings", { model: $("emb-model").value, input: texts });
      const vectors = r.data.sort((a, b) => a.index - b.index).map(d => d.embedding);
      const xy = vectors.length >= 2 ? C.pca2(vectors) : vectors.map(() => [0, 0]);
      fill("emb-plot", C.scatter(xy.map((p, i) => ({ x: p[0], y: p[1], label: texts[i] })), "embeddings projected on 2 principal components"));
      fill("emb-matrix", h("div", { class: "table-wrap" }, h("table", { id: "cosine" },
        h("thead", {}, h("tr", {}, h("th", {}, ""), texts.map((t, j) => h("th", { scope: "col", title: t }, `#${j + 1}`)))),
        h("tbody", {}, vectors.map((v, i) => h("tr", {}, h("th", { scope: "row", title: texts[i] }, `#${i + 1} ${texts[i].slice(0, 24)}`),
          vectors.map(w => { const c = C.cosine(v, w); return h("td", { style: `background: rgba(36,88,214,${Math.max(0, c) * 0.5})` }, c.toFixed(3)); })))))));
    } catch (e) { C.showError(e); }
  });

  // ---------------------------------------------------------------- rerank
  $("rr-form").addEventListener("submit", async ev => {
    ev.preventDefault(); C.clearError();
    const docs = $("rr-docs").value.split("\n").map(x => x.trim()).filter(Boolean);
    try {
      const r = await api("POST", "/v1/rerank", { model: $("rr-model").value, query: $("rr-query").value, documents: docs });
      const results = (r.results || []).slice().sort((a, b) => b.relevance_score - a.relevance_score).map((x, i) => ({ ...x, rank: i + 1 }));
      fill("rr-result", C.table([{ label: "Rank", cell: x => x.rank }, { label: "Score", cell: x => x.relevance_score.toFixed(4) },
        { label: "Document", cell: x => docs[x.index] }], results));
    } catch (e) { C.showError(e); }
  });

  // ---------------------------------------------------------------- images and audio
  $("img-form").addEventListener("submit", async ev => {
    ev.preventDefault(); C.clearError();
    try {
      const r = await api("POST", "/v1/images/generations", { model: $("img-model").value, prompt: $("img-prompt").value, size: $("img-size").value, response_format: "b64_json" });
      fill("img-result", r.data.map(d => h("img", { src: d.url || `data:image/png;base64,${d.b64_json}`, alt: $("img-prompt").value, style: "max-width:100%" })));
    } catch (e) { C.showError(e); }
  });
  $("tts-form").addEventListener("submit", async ev => {
    ev.preventDefault(); C.clearError();
    try {
      const r = await api("POST", "/v1/audio/speech", { model: $("tts-model").value, input: $("tts-input").value, voice: $("tts-voice").value }, { raw: true });
      if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
      const url = URL.createObjectURL(await r.blob());
      fill("tts-result", h("audio", { controls: true, src: url, "aria-label": "generated speech" }));
    } catch (e) { C.showError(e); }
  });
  $("stt-form").addEventListener("submit", async ev => {
    ev.preventDefault(); C.clearError();
    const form = new FormData(); form.append("model", $("stt-model").value); form.append("file", $("stt-file").files[0]);
    try {
      const r = await fetch("/v1/audio/transcriptions", { method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content } });
      const j = await r.json();
      if (!r.ok) throw new Error((j.error && j.error.message) || JSON.stringify(j));
      fill("stt-result", h("pre", {}, j.text));
    } catch (e) { C.showError(e); }
  });

  // ---------------------------------------------------------------- view code
  const base = location.origin + "/v1";
  function request(tab) {
    switch (tab) {
      case "chat": { const model = ([...$("chat-models").selectedOptions][0] || {}).value || "MODEL";
        return { path: "/chat/completions", body: { model, messages: chatMessages(model, $("chat-input").value || "Hello"), stream: true, ...chatParams() },
          py: "client.chat.completions.create", js: "client.chat.completions.create" }; }
      case "embeddings": return { path: "/embeddings", body: { model: $("emb-model").value, input: $("emb-texts").value.split("\n").filter(Boolean) },
        py: "client.embeddings.create", js: "client.embeddings.create" };
      case "rerank": return { path: "/rerank", body: { model: $("rr-model").value, query: $("rr-query").value, documents: $("rr-docs").value.split("\n").filter(Boolean) }, py: null };
      case "images": return { path: "/images/generations", body: { model: $("img-model").value, prompt: $("img-prompt").value, size: $("img-size").value },
        py: "client.images.generate", js: "client.images.generate" };
      case "speech": return { path: "/audio/speech", body: { model: $("tts-model").value, input: $("tts-input").value, voice: $("tts-voice").value },
        py: "client.audio.speech.create", js: "client.audio.speech.create" };
      default: return { path: "/audio/transcriptions", body: { model: $("stt-model").value }, multipart: true,
        py: "client.audio.transcriptions.create", js: "client.audio.transcriptions.create" };
    }
  }
  const pyValue = v => JSON.stringify(v, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
  function snippets(tab) {
    const r = request(tab), json = JSON.stringify(r.body, null, 2);
    const curl = r.multipart
      ? `curl ${base}${r.path} \\\n  -H "Authorization: Bearer $GPUSTACK_API_KEY" \\\n  -F model=${r.body.model} -F file=@audio.wav`
      : `curl ${base}${r.path} \\\n  -H "Authorization: Bearer $GPUSTACK_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${json.replace(/'/g, "'\\''")}'`;
    const kwargs = Object.entries(r.body).map(([k, v]) => `    ${k}=${pyValue(v).replace(/\n/g, "\n    ")},`).join("\n");
    const python = r.py === null
      ? `import os, httpx\n\nr = httpx.post(\n    "${base}${r.path}",\n    headers={"Authorization": f"Bearer {os.environ['GPUSTACK_API_KEY']}"},\n    json=${pyValue(r.body).replace(/\n/g, "\n    ")},\n)\nprint(r.json())`
      : `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${base}", api_key=os.environ["GPUSTACK_API_KEY"])\nresult = ${r.py}(\n${r.multipart ? `    file=open("audio.wav", "rb"),\n` : ""}${kwargs}\n)\n` +
        (tab === "chat" ? `for chunk in result:\n    print(chunk.choices[0].delta.content or "", end="", flush=True)` : "print(result)");
    const js = r.py === null
      ? `const r = await fetch("${base}${r.path}", {\n  method: "POST",\n  headers: { "Authorization": \`Bearer \${process.env.GPUSTACK_API_KEY}\`, "Content-Type": "application/json" },\n  body: JSON.stringify(${json.replace(/\n/g, "\n  ")}),\n});\nconsole.log(await r.json());`
      : `import OpenAI from "openai";\n\nconst client = new OpenAI({ baseURL: "${base}", apiKey: process.env.GPUSTACK_API_KEY });\nconst result = await ${r.js}(${json.replace(/\n/g, "\n")});\n` +
        (tab === "chat" ? `for await (const chunk of result) process.stdout.write(chunk.choices[0]?.delta?.content || "");` : "console.log(result);");
    return { curl, python, js };
  }
  let codeTab = "chat";
  function showLang(lang) {
    document.querySelectorAll("#code-dialog [data-lang]").forEach(b => b.setAttribute("aria-selected", b.dataset.lang === lang ? "true" : "false"));
    fill("code-body", C.copyable(snippets(codeTab)[lang], `${lang} snippet`));
  }
  document.querySelectorAll("#code-dialog [data-lang]").forEach(b => b.addEventListener("click", () => showLang(b.dataset.lang)));
  document.querySelectorAll(".view-code").forEach(b => b.addEventListener("click", () => {
    codeTab = b.dataset.for; showLang("curl"); $("code-dialog").showModal();
  }));

  C.poll(loadModels, 10000);
})();
