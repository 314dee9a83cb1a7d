// Workflows: activate/deactivate toggles, publish, the run form built from `inputs`, the graph
// preview, and the definition editor (validated as you type, problems shown at their line).
"use strict";

(function () {
  const SY = window.SY;
  const boot = SY.boot("boot") || {};

  // ---------------------------------------------------------------------------- shared

  for (const toggle of SY.$$(".active-toggle")) {
    toggle.addEventListener("change", async () => {
      const slug = toggle.dataset.slug;
      try {
        const data = await SY.api("PATCH", `/api/v1/workflows/${slug}/`, { is_active: toggle.checked });
        SY.toast(`${slug} is now ${data.is_active ? "active" : "inactive"}`, "success");
      } catch (error) {
        toggle.checked = !toggle.checked;
        SY.toast(error.message, "error");
      }
    });
  }

  for (const button of SY.$$(".publish-button")) {
    button.addEventListener("click", async () => {
      const { slug, version } = button.dataset;
      if (!(await SY.confirm({ title: `Publish v${version}?`, text: "Triggers and manual runs use the published version from now on.", ok: "Publish" }))) return;
      try {
        await SY.post(`/api/v1/workflows/${slug}/publish/`, { version: Number(version) });
        window.location.assign(`/workflows/${slug}/?tab=versions`);
      } catch (error) {
        SY.toast(error.message, "error");
      }
    });
  }

  // ---------------------------------------------------------------------------- detail

  const wfTabs = SY.$("#wf-tabs");
  if (wfTabs) {
    const drawGraph = () => SY.renderGraph(SY.$("#wf-graph"), SY.graphFromDefinition(boot.definition), { label: `Graph of ${boot.slug}` });
    const tabs = SY.tabs(wfTabs, (name) => {
      if (name === "overview") drawGraph();
      const url = new URL(location.href);
      url.searchParams.set("tab", name);
      history.replaceState(null, "", url);
    });
    drawGraph();
    const initial = SY.$("#initial-tab");
    if (initial && initial.dataset.tab && initial.dataset.tab !== "overview") tabs.select(initial.dataset.tab);
  }

  const runForm = SY.$("#run-form");
  if (runForm) {
    runForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const box of SY.$$("[data-error-for]", runForm)) box.textContent = "";
      SY.$("#run-error").textContent = "";
      const inputs = {};
      let bad = false;
      for (const field of SY.$$("[name]", runForm)) {
        if (field.name.startsWith("__")) continue;
        const raw = field.value.trim();
        const type = field.dataset.type;
        const errorBox = SY.$(`[data-error-for="${CSS.escape(field.name)}"]`, runForm);
        if (!raw) {
          if (field.required) {
            errorBox.textContent = "required";
            bad = true;
          }
          continue;
        }
        try {
          if (type === "integer") {
            if (!/^-?\d+$/.test(raw)) throw new Error("must be a whole number");
            inputs[field.name] = parseInt(raw, 10);
          } else if (type === "number") {
            if (isNaN(Number(raw))) throw new Error("must be a number");
            inputs[field.name] = Number(raw);
          } else if (type === "boolean") {
            inputs[field.name] = raw === "true";
          } else if (type === "object" || type === "array") {
            inputs[field.name] = JSON.parse(raw);
          } else {
            inputs[field.name] = field.value;
          }
        } catch (error) {
          errorBox.textContent = error instanceof SyntaxError ? "must be valid JSON" : error.message;
          bad = true;
        }
      }
      const labels = {};
      for (const item of (runForm.elements.__labels.value || "").split(",")) {
        const [key, ...rest] = item.split("=");
        if (key.trim()) labels[key.trim()] = rest.join("=").trim();
      }
      if (bad) return;
      const body = { inputs, labels };
      if (runForm.elements.__version.value) body.version = Number(runForm.elements.__version.value);
      try {
        const created = await SY.post(`/api/v1/workflows/${runForm.dataset.slug}/execute/`, body);
        window.location.assign(`/executions/${created.id}/`);
      } catch (error) {
        const errors = (error.data && error.data.errors) || [];
        let shown = false;
        for (const e of errors) {
          const name = (e.path || "").replace(/^inputs\.?/, "").split(/[.[]/)[0];
          const box = name && SY.$(`[data-error-for="${CSS.escape(name)}"]`, runForm);
          if (box) {
            box.textContent = e.message;
            shown = true;
          }
        }
        if (!shown) SY.$("#run-error").textContent = error.message;
      }
    });
  }

  // ---------------------------------------------------------------------------- triggers

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      SY.toast("Copied", "success");
    } catch (error) {
      SY.toast("Copy failed: select the text and copy it", "error");
    }
  }

  for (const button of SY.$$(".copy-url")) {
    button.addEventListener("click", () => {
      const code = SY.$(".webhook-url", button.closest(".webhook-url-row"));
      copyText(code.dataset.url);
    });
  }

  for (const button of SY.$$(".regenerate-key")) {
    button.addEventListener("click", async () => {
      const { slug, trigger } = button.dataset;
      const ok = await SY.confirm({
        title: "Regenerate this webhook URL?",
        text: "The current URL stops working at once: every sender must be given the new one.",
        ok: "Regenerate",
        danger: true,
      });
      if (!ok) return;
      try {
        const data = await SY.post(`/api/v1/workflows/${slug}/triggers/${trigger}/regenerate-key/`);
        const url = `${location.origin}${data.webhook.path}`;
        const code = SY.$(".webhook-url", button.closest(".webhook-url-row"));
        code.dataset.url = url;
        code.textContent = url;
        SY.toast("New webhook URL; the old one no longer works", "success");
      } catch (error) {
        SY.toast(error.message, "error");
      }
    });
  }

  function randomSecret() {
    const bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  for (const form of SY.$$(".secret-form")) {
    const input = form.elements.value;
    SY.$(".generate-secret", form).addEventListener("click", () => {
      input.value = randomSecret();
      input.type = "text";
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = input.value;
      if (!value) {
        SY.toast("Enter or generate a value first", "error");
        return;
      }
      const { name, scope, slug } = form.dataset;
      try {
        if (scope) {
          const query = scope === "global" ? "" : `?scope=${encodeURIComponent(scope)}`;
          await SY.api("PATCH", `/api/v1/secrets/${encodeURIComponent(name)}/${query}`, { value });
        } else {
          await SY.post("/api/v1/secrets/", { name, value, scope: slug, description: `webhook signing secret of ${slug}` });
          form.dataset.scope = slug;
        }
        input.value = "";
        input.type = "password";
        SY.replace(SY.$(".secret-result", form), SY.el("div", { class: "token-box" },
          SY.el("strong", {}, `${name} saved. Value (shown once):`),
          SY.el("code", { class: "secret-once" }, value),
          SY.el("button", { type: "button", class: "button button-small", onclick: () => copyText(value) }, "Copy")));
      } catch (error) {
        SY.toast(error.message, "error");
      }
    });
  }

  function deliveryRow(body, d) {
    const execution = d.execution && typeof d.execution === "object" ? d.execution.id : d.execution;
    return SY.el("tr", { dataset: { delivery: d.id } },
      SY.el("td", {}, SY.timeEl(d.received_at)),
      SY.el("td", {}, SY.el("span", { class: `chip verdict-${d.signature}` }, d.signature)),
      SY.el("td", {}, SY.el("span", { class: `chip outcome-${d.outcome}` }, d.outcome), d.reason ? [" ", SY.el("span", { class: "small muted" }, d.reason)] : null),
      SY.el("td", { class: "num" }, String(d.status_code)),
      SY.el("td", {}, execution ? SY.el("a", { class: "mono", href: `/executions/${execution}/` }, `#${SY.shortId(execution)}`) : SY.el("span", { class: "muted" }, "—")),
      SY.el("td", {}, SY.el("button", { type: "button", class: "button button-small redeliver", dataset: { delivery: d.id, needs: "operate" } }, "Redeliver")));
  }

  async function reloadDeliveries(body) {
    const data = await SY.get(`/api/v1/workflows/${body.dataset.slug}/triggers/`);
    const trigger = (data.results || []).find((t) => String(t.id) === body.dataset.trigger);
    if (!trigger || !trigger.webhook) return;
    const rows = trigger.webhook.recent_deliveries || [];
    SY.replace(body, rows.length ? rows.map((d) => deliveryRow(body, d)) : SY.el("tr", { class: "no-deliveries" }, SY.el("td", { colspan: 6, class: "muted" }, "No deliveries yet.")));
  }

  for (const body of SY.$$(".deliveries-body")) {
    body.addEventListener("click", async (event) => {
      const button = event.target.closest(".redeliver");
      if (!button) return;
      const ok = await SY.confirm({ title: "Redeliver this webhook?", text: "Its stored body is replayed as a new delivery and may start a new run.", ok: "Redeliver" });
      if (!ok) return;
      button.disabled = true;
      try {
        const created = await SY.post(`/api/v1/workflows/${body.dataset.slug}/triggers/${body.dataset.trigger}/deliveries/${button.dataset.delivery}/redeliver/`);
        SY.toast(created.execution ? `Redelivered: run #${SY.shortId(created.execution.id)} started` : `Redelivered: ${created.outcome}`, "success");
        await reloadDeliveries(body);
      } catch (error) {
        button.disabled = false;
        SY.toast(error.message, "error");
      }
    });
  }

  for (const node of SY.$$(".next-fires time, .next-run time")) {
    node.title = node.getAttribute("datetime");
  }

  // ---------------------------------------------------------------------------- editor

  const textarea = SY.$("#definition");
  if (!textarea) return;
  const gutter = SY.$("#gutter");
  let errorLines = new Map();
  let lastGraph = null;

  // Map an error path (`definition.nodes[2].on.success`) to a 1-based line of block YAML.
  function locate(text, path) {
    const tokens = [];
    for (const part of String(path || "").replace(/^definition\.?/, "").split(".")) {
      if (!part) continue;
      const m = part.match(/^([^[]*)((?:\[\d+\])*)$/);
      if (!m) {
        tokens.push(part);
        continue;
      }
      if (m[1]) tokens.push(m[1]);
      for (const idx of m[2].matchAll(/\[(\d+)\]/g)) tokens.push(Number(idx[1]));
    }
    const lines = text.split("\n");
    const meaningful = (i) => lines[i].trim() && !lines[i].trim().startsWith("#");
    const indentOf = (i) => lines[i].length - lines[i].trimStart().length;
    let start = 0;
    let end = lines.length;
    let parent = -1;
    let itemLine = -1; // the first line of a sequence item carries its first key
    let found = -1;
    for (const token of tokens) {
      if (typeof token === "number") {
        const items = [];
        let minIndent = Infinity;
        for (let i = start; i < end; i++) {
          if (!meaningful(i) || indentOf(i) <= parent) continue;
          if (/^\s*-(\s|$)/.test(lines[i])) {
            const ind = indentOf(i);
            if (ind < minIndent) {
              minIndent = ind;
              items.length = 0;
            }
            if (ind === minIndent) items.push(i);
          }
        }
        if (token >= items.length) break;
        found = items[token];
        start = found;
        end = lines.length;
        for (let i = found + 1; i < lines.length; i++) {
          if (meaningful(i) && indentOf(i) <= minIndent) {
            end = i;
            break;
          }
        }
        parent = minIndent;
        itemLine = found;
        continue;
      }
      let match = -1;
      let matchIndent = -1;
      let childIndent = null;
      for (let i = start; i < end; i++) {
        if (!meaningful(i)) continue;
        let content = lines[i].trim();
        let ind = indentOf(i);
        if (i === itemLine) {
          content = content.replace(/^-\s*/, "");
          ind += 2;
        } else if (ind <= parent) {
          continue;
        }
        if (childIndent === null) childIndent = ind;
        if (ind !== childIndent) continue;
        const m = content.match(/^["']?([^"':#]+?)["']?\s*:(\s|$)/);
        if (m && m[1] === token) {
          match = i;
          matchIndent = ind;
          break;
        }
      }
      if (match < 0) break;
      found = match;
      const rest = lines[match].slice(lines[match].indexOf(":") + 1).trim();
      if (rest.startsWith("{") || rest.startsWith("[") || (rest && !rest.startsWith("#") && !rest.startsWith("|") && !rest.startsWith(">"))) break;
      start = match + 1;
      end = lines.length;
      let sameIndentSeq = false;
      for (let i = match + 1; i < lines.length; i++) {
        if (!meaningful(i)) continue;
        sameIndentSeq = indentOf(i) === matchIndent && /^\s*-(\s|$)/.test(lines[i]);
        break;
      }
      for (let i = match + 1; i < lines.length; i++) {
        if (!meaningful(i)) continue;
        const ind = indentOf(i);
        if (ind < matchIndent || (ind === matchIndent && !(sameIndentSeq && /^\s*-(\s|$)/.test(lines[i])))) {
          end = i;
          break;
        }
      }
      parent = sameIndentSeq ? matchIndent - 1 : matchIndent;
      itemLine = -1;
    }
    return found >= 0 ? found + 1 : 1;
  }

  function renderGutter() {
    const count = textarea.value.split("\n").length;
    SY.clear(gutter);
    for (let n = 1; n <= count; n++) {
      const problems = errorLines.get(n);
      gutter.appendChild(problems ? SY.el("span", { class: "err", title: problems.join("\n") }, String(n)) : document.createTextNode(String(n)));
      gutter.appendChild(document.createTextNode("\n"));
    }
    gutter.scrollTop = textarea.scrollTop;
  }

  function goToLine(line) {
    const lines = textarea.value.split("\n");
    const offset = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    textarea.focus();
    textarea.setSelectionRange(offset, offset + (lines[line - 1] || "").length);
    textarea.scrollTop = Math.max(0, (line - 5) * 20);
  }

  function showProblems(errors) {
    const list = SY.$("#validation");
    SY.clear(list);
    errorLines = new Map();
    const text = textarea.value;
    for (const error of errors) {
      const yamlLine = (error.message || "").match(/line (\d+)/);
      const line = yamlLine ? Number(yamlLine[1]) : locate(text, error.path);
      errorLines.set(line, [...(errorLines.get(line) || []), error.message]);
      list.appendChild(SY.el("li", {},
        SY.el("button", { type: "button", class: "link-button", onclick: () => goToLine(line), "aria-label": `Go to line ${line}` }, `line ${line}`),
        SY.el("span", {}, error.message),
        error.path ? SY.el("span", { class: "path" }, error.path) : null));
    }
    renderGutter();
  }

  function setValidity(valid, text) {
    SY.replace(SY.$("#validity"), SY.el("span", { class: valid ? "valid-ok" : "valid-bad" }, text));
  }

  const validate = SY.coalesce(async () => {
    const text = textarea.value;
    if (!text.trim()) {
      showProblems([]);
      setValidity(false, "Empty");
      return;
    }
    const result = await SY.post("/api/v1/workflows/validate/", { definition: text });
    if (textarea.value !== text) return;
    if (result.valid) {
      showProblems([]);
      setValidity(true, `✓ Valid · ${result.nodes.length} node${result.nodes.length === 1 ? "" : "s"}`);
      lastGraph = {
        nodes: result.nodes.map((n) => ({ id: n.id, type: n.type, action: null })),
        edges: result.nodes.flatMap((n) => Object.entries(n.on || {}).flatMap(([outcome, targets]) => targets.map((to) => ({ from: n.id, to, outcome })))),
      };
      SY.renderGraph(SY.$("#preview-graph"), lastGraph, { label: "Graph preview" });
    } else {
      showProblems(result.errors || []);
      setValidity(false, `✗ ${result.errors.length} problem${result.errors.length === 1 ? "" : "s"}`);
    }
  });
  const validateSoon = SY.debounce(validate, 350);

  let escaped = false;
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      escaped = true;
      return;
    }
    if (event.key === "Tab" && !escaped && !event.shiftKey) {
      event.preventDefault();
      const { selectionStart: s, selectionEnd: e, value } = textarea;
      textarea.value = `${value.slice(0, s)}  ${value.slice(e)}`;
      textarea.setSelectionRange(s + 2, s + 2);
      validateSoon();
      renderGutter();
    }
    escaped = false;
  });
  textarea.addEventListener("input", () => {
    renderGutter();
    validateSoon();
  });
  textarea.addEventListener("scroll", () => (gutter.scrollTop = textarea.scrollTop));

  SY.$("#save-definition").addEventListener("click", async () => {
    const definition = textarea.value;
    try {
      if (boot.slug) {
        const version = await SY.post(`/api/v1/workflows/${boot.slug}/versions/`, { definition });
        if (SY.$("#publish-on-save") && SY.$("#publish-on-save").checked) {
          await SY.post(`/api/v1/workflows/${boot.slug}/publish/`, { version: version.number });
        }
        window.location.assign(`/workflows/${boot.slug}/?tab=versions`);
      } else {
        const created = await SY.post("/api/v1/workflows/", { definition });
        window.location.assign(`/workflows/${created.slug}/`);
      }
    } catch (error) {
      const errors = (error.data && error.data.errors) || [];
      if (errors.length) showProblems(errors);
      SY.toast(`Not saved: ${error.message}`, "error");
    }
  });

  textarea.value = boot.text || "";
  renderGutter();
  validate();
})();
