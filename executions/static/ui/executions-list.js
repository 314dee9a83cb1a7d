// Executions list: filters kept in the URL, cursor pages from the REST API, live rows from
// the `executions` group, bulk actions, saved views and export of the filtered set.
"use strict";

(function () {
  const SY = window.SY;
  const FILTER_KEYS = ["workflow", "status", "trigger", "since", "until", "label", "q"];
  const PAGE_SIZE = 100;

  const boot = SY.boot("boot");
  const state = {
    filters: Object.assign({}, boot.filters),
    cursor: boot.cursor || "",
    rows: new Map(),
    order: [],
    selected: new Set(),
    next: null,
    previous: null,
    savedViews: boot.savedViews || [],
    seq: boot.seq || 0,
  };
  const body = SY.$("#executions-body");
  const form = SY.$("#filters");

  // ---------------------------------------------------------------------------- URL <-> filters

  function queryString(extra) {
    const params = new URLSearchParams();
    for (const key of FILTER_KEYS) if (state.filters[key]) params.set(key, state.filters[key]);
    for (const [key, value] of Object.entries(extra || {})) if (value) params.set(key, value);
    return params.toString();
  }

  function toLocalInput(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fillForm() {
    SY.$("#f-workflow").value = state.filters.workflow || "";
    ensureOption(SY.$("#f-workflow"), state.filters.workflow);
    SY.$("#f-trigger").value = state.filters.trigger || "";
    ensureOption(SY.$("#f-trigger"), state.filters.trigger);
    const statuses = (state.filters.status || "").split(",").filter(Boolean);
    for (const box of SY.$$("input[name=status]", form)) box.checked = statuses.includes(box.value);
    SY.$("#f-since").value = toLocalInput(state.filters.since);
    SY.$("#f-until").value = toLocalInput(state.filters.until);
    SY.$("#f-label").value = state.filters.label || "";
    SY.$("#f-q").value = state.filters.q || "";
  }

  function ensureOption(select, value) {
    if (value && !Array.from(select.options).some((o) => o.value === value)) {
      select.appendChild(SY.el("option", { value }, value));
      select.value = value;
    }
  }

  function readForm() {
    const since = SY.$("#f-since").value;
    const until = SY.$("#f-until").value;
    return {
      workflow: SY.$("#f-workflow").value,
      status: SY.$$("input[name=status]:checked", form).map((b) => b.value).join(","),
      trigger: SY.$("#f-trigger").value,
      since: since ? new Date(since).toISOString() : "",
      until: until ? new Date(until).toISOString() : "",
      label: SY.$("#f-label").value.trim(),
      q: SY.$("#f-q").value.trim(),
    };
  }

  function pushUrl(replace) {
    const qs = queryString({ cursor: state.cursor });
    const url = `${location.pathname}${qs ? `?${qs}` : ""}`;
    if (url === location.pathname + location.search) return;
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    updateExportLinks();
  }

  function updateExportLinks() {
    const qs = queryString();
    SY.$("#export-csv").href = `/api/v1/executions/export/?format=csv${qs ? `&${qs}` : ""}`;
    SY.$("#export-json").href = `/api/v1/executions/export/?format=json${qs ? `&${qs}` : ""}`;
  }

  function cursorOf(link) {
    if (!link) return null;
    try {
      return new URL(link, location.origin).searchParams.get("cursor");
    } catch (e) {
      return null;
    }
  }

  // ---------------------------------------------------------------------------- rendering

  function rowCells(row) {
    const trigger = SY.triggerText(row.trigger);
    const total = row.jobs_total || 0;
    const done = row.jobs_done || 0;
    const pct = total ? Math.round((100 * done) / total) : 0;
    const fill = SY.el("span", { class: "progress-fill" });
    fill.style.width = `${pct}%`;
    const selected = state.selected.has(row.id);
    const labels = Object.entries(row.labels || {});
    return [
      SY.el("td", { class: "col-check" }, SY.el("input", {
        type: "checkbox", class: "row-check", checked: selected, "aria-label": `Select execution ${SY.shortId(row.id)} of ${row.workflow}`, dataset: { id: row.id },
      })),
      SY.el("td", {}, SY.badge(row.status)),
      SY.el("td", {}, SY.el("div", { class: "workflow-cell" },
        SY.el("a", { class: "row-link", href: `/executions/${row.id}/` }, row.workflow),
        SY.el("span", { class: "sub" }, `v${row.version} · `, SY.el("span", { class: "mono" }, SY.shortId(row.id)),
          row.rerun_of ? " · re-run" : "", row.parent ? " · child" : ""),
        row.error && (row.status === "failed" || row.status === "timed_out") ? SY.el("span", { class: "error-snippet ellipsis", title: row.error }, row.error) : null)),
      SY.el("td", { class: "hide-sm" }, SY.el("div", { class: "trigger-cell" }, SY.el("span", { class: "tag-kind" }, trigger.kind), trigger.who ? SY.el("span", { class: "who" }, trigger.who) : null)),
      SY.el("td", { class: "nowrap" }, SY.timeEl(row.started_at || row.created_at)),
      SY.el("td", { class: "num" }, SY.durationEl(row.started_at, row.finished_at, row.duration_ms)),
      SY.el("td", { class: "hide-sm" }, SY.el("div", { class: `progress st-${row.status === "running" ? "running" : row.status}`, title: `${done} of ${total} jobs finished` },
        SY.el("span", { class: "progress-track" }, fill), SY.el("span", { class: "progress-text" }, `${done}/${total}`))),
      SY.el("td", { class: "hide-sm" }, SY.el("div", { class: "chips" }, labels.slice(0, 4).map(([k, v]) => SY.el("span", { class: "chip", title: `${k}=${v}` }, SY.el("span", { class: "chip-key" }, `${k}=`), v)),
        labels.length > 4 ? SY.el("span", { class: "chip" }, `+${labels.length - 4}`) : null)),
    ];
  }

  function rowElement(row, isNew) {
    const tr = SY.el("tr", { dataset: { id: row.id, status: row.status }, class: `${state.selected.has(row.id) ? "is-selected" : ""}${isNew ? " flash-new" : ""}` }, rowCells(row));
    return tr;
  }

  function render() {
    SY.clear(body);
    for (const id of state.order) body.appendChild(rowElement(state.rows.get(id)));
    afterRender();
  }

  function afterRender() {
    const n = state.order.length;
    SY.$("#list-empty").hidden = n > 0;
    SY.$("#list-count").textContent = n ? `${n} execution${n === 1 ? "" : "s"} on this page${state.cursor ? "" : " · newest first"}` : "";
    SY.$("#page-newer").disabled = !state.previous;
    SY.$("#page-older").disabled = !state.next;
    SY.$("#page-info").textContent = state.cursor ? "Older page" : "Latest";
    updateBulkBar();
  }

  function setPage(data) {
    state.rows.clear();
    state.order = [];
    for (const row of data.results || []) {
      state.rows.set(row.id, row);
      state.order.push(row.id);
    }
    state.next = cursorOf(data.next);
    state.previous = cursorOf(data.previous);
    for (const id of Array.from(state.selected)) if (!state.rows.has(id)) state.selected.delete(id);
    render();
  }

  function showError(errors) {
    const box = SY.$("#list-error");
    if (!errors || !errors.length) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    box.textContent = `Invalid filter: ${errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join("; ")}`;
  }

  const load = SY.coalesce(async () => {
    const qs = queryString({ cursor: state.cursor });
    try {
      const data = await SY.get(`/api/v1/executions/${qs ? `?${qs}` : ""}`);
      showError(null);
      setPage(data);
    } catch (error) {
      if (error instanceof SY.ApiError && error.status === 400) {
        showError(error.data && error.data.errors);
        setPage({ results: [] });
        return;
      }
      if (error instanceof SY.ApiError && error.status === 404 && state.cursor) {
        state.cursor = "";
        pushUrl(true);
        return load();
      }
      throw error;
    }
  });

  // ---------------------------------------------------------------------------- live rows

  function matches(row) {
    const f = state.filters;
    const list = (value) => (value || "").split(",").map((s) => s.trim()).filter(Boolean);
    if (f.workflow && !list(f.workflow).includes(row.workflow)) return false;
    if (f.status && !list(f.status).includes(row.status)) return false;
    if (f.trigger && !list(f.trigger).includes((row.trigger || {}).kind || "manual")) return false;
    if (f.since && new Date(row.created_at) < new Date(f.since)) return false;
    if (f.until && new Date(row.created_at) >= new Date(f.until)) return false;
    for (const item of list(f.label)) {
      const [key, ...rest] = item.split("=");
      const labels = row.labels || {};
      if (!(key in labels)) return false;
      if (rest.length && labels[key] !== rest.join("=")) return false;
    }
    return true;
  }

  const refetchSoon = SY.debounce(() => load(), 400);

  function onChanged(message) {
    const row = message.execution;
    if (!row || !row.id) return;
    const existing = body.querySelector(`tr[data-id="${CSS.escape(row.id)}"]`);
    if (existing) {
      state.rows.set(row.id, row);
      const tr = rowElement(row);
      existing.replaceWith(tr);
      return;
    }
    if (state.cursor) return; // older pages stay put; the newest page shows new runs
    if (state.filters.q) {
      refetchSoon(); // free text is matched by the server only
      return;
    }
    if (!matches(row)) return;
    state.rows.set(row.id, row);
    state.order.unshift(row.id);
    body.insertBefore(rowElement(row, true), body.firstChild);
    while (state.order.length > PAGE_SIZE) {
      const dropped = state.order.pop();
      state.rows.delete(dropped);
      const tr = body.querySelector(`tr[data-id="${CSS.escape(dropped)}"]`);
      if (tr) tr.remove();
      state.next = state.next || "more";
    }
    afterRender();
  }

  function onDeleted(message) {
    const id = message.execution_id;
    if (!id) return;
    state.rows.delete(id);
    state.order = state.order.filter((other) => other !== id);
    state.selected.delete(id);
    const tr = body.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
    if (tr) tr.remove();
    afterRender();
  }

  // ---------------------------------------------------------------------------- selection + bulk

  function updateBulkBar() {
    const n = state.selected.size;
    SY.$("#bulk-bar").hidden = n === 0;
    SY.$("#bulk-count").textContent = `${n} selected`;
    const all = SY.$("#select-all");
    all.checked = n > 0 && state.order.every((id) => state.selected.has(id));
    all.indeterminate = n > 0 && !all.checked;
  }

  body.addEventListener("change", (event) => {
    const box = event.target.closest(".row-check");
    if (!box) return;
    const id = box.dataset.id;
    if (box.checked) state.selected.add(id);
    else state.selected.delete(id);
    box.closest("tr").classList.toggle("is-selected", box.checked);
    updateBulkBar();
  });

  SY.$("#select-all").addEventListener("change", (event) => {
    const on = event.target.checked;
    state.selected.clear();
    if (on) for (const id of state.order) state.selected.add(id);
    for (const box of SY.$$(".row-check", body)) {
      box.checked = on;
      box.closest("tr").classList.toggle("is-selected", on);
    }
    updateBulkBar();
  });

  SY.$("#bulk-clear").addEventListener("click", () => {
    state.selected.clear();
    render();
  });

  const VERBS = { cancel: "Cancel", rerun: "Re-run", delete: "Delete" };
  for (const button of SY.$$("[data-bulk]")) {
    button.addEventListener("click", async () => {
      const action = button.dataset.bulk;
      const ids = Array.from(state.selected);
      if (!ids.length) return;
      const ok = await SY.confirm({
        title: `${VERBS[action]} ${ids.length} execution${ids.length === 1 ? "" : "s"}?`,
        text: action === "delete"
          ? "Finished executions are deleted with their jobs, output and log. This cannot be undone. Runs still in progress are skipped."
          : action === "cancel"
            ? "Pending work is cancelled and nothing new starts; jobs already running finish."
            : "Each one runs again with the same version and inputs.",
        ok: VERBS[action],
        danger: action !== "rerun",
      });
      if (!ok) return;
      try {
        const data = await SY.post("/api/v1/executions/bulk/", { action, ids });
        const results = data.results || [];
        const failed = results.filter((r) => !r.ok);
        const done = results.length - failed.length;
        if (action === "delete") {
          for (const r of results) {
            if (!r.ok) continue;
            state.rows.delete(r.id);
            state.order = state.order.filter((id) => id !== r.id);
          }
        }
        state.selected.clear();
        render();
        SY.toast(`${VERBS[action]}: ${done} done${failed.length ? `, ${failed.length} refused (${failed[0].error})` : ""}`, failed.length ? "error" : "success");
      } catch (error) {
        SY.toast(error.message, "error");
      }
    });
  }

  // ---------------------------------------------------------------------------- saved views

  const menu = SY.$("#views-menu");
  const menuButton = SY.$("#views-button");

  function renderViews() {
    SY.clear(menu);
    if (!state.savedViews.length) menu.appendChild(SY.el("div", { class: "menu-empty" }, "No saved views yet. Filter the list, then “Save view…”."));
    for (const view of state.savedViews) {
      menu.appendChild(SY.el("div", { class: "menu-item", role: "none" },
        SY.el("a", { href: `/executions/${view.query ? `?${view.query}` : ""}`, role: "menuitem", title: view.query || "no filter" }, view.name),
        SY.el("button", { type: "button", class: "link-button small", "aria-label": `Delete saved view ${view.name}`, onclick: () => deleteView(view) }, "Delete")));
    }
  }

  async function deleteView(view) {
    const ok = await SY.confirm({ title: `Delete the view “${view.name}”?`, ok: "Delete", danger: true });
    if (!ok) return;
    await SY.post(`/executions/views/${view.id}/delete/`);
    state.savedViews = state.savedViews.filter((v) => v.id !== view.id);
    renderViews();
  }

  menuButton.addEventListener("click", () => {
    const open = menu.hidden;
    menu.hidden = !open;
    menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) renderViews();
  });
  document.addEventListener("click", (event) => {
    if (!menu.hidden && !event.target.closest(".views-menu")) {
      menu.hidden = true;
      menuButton.setAttribute("aria-expanded", "false");
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !menu.hidden) {
      menu.hidden = true;
      menuButton.setAttribute("aria-expanded", "false");
      menuButton.focus();
    }
  });

  SY.$("#save-view").addEventListener("click", async () => {
    const name = await SY.confirm({
      title: "Save this view",
      text: queryString() ? `Filters: ${decodeURIComponent(queryString()).replaceAll("&", "  ·  ")}` : "No filters: the view shows every execution.",
      ok: "Save",
      input: { label: "Name", value: "" },
    });
    if (!name) return;
    try {
      const view = await SY.post("/executions/views/", { name, query: queryString() });
      state.savedViews = state.savedViews.filter((v) => v.id !== view.id && v.name !== view.name).concat([view]).sort((a, b) => a.name.localeCompare(b.name));
      SY.toast(`Saved view “${view.name}”`, "success");
    } catch (error) {
      SY.toast(error.message, "error");
    }
  });

  // ---------------------------------------------------------------------------- wiring

  function applyFilters() {
    const next = readForm();
    if (FILTER_KEYS.every((k) => (next[k] || "") === (state.filters[k] || ""))) return;
    state.filters = next;
    state.cursor = "";
    state.selected.clear();
    pushUrl(false);
    load();
  }
  const applySoon = SY.debounce(applyFilters, 350);
  form.addEventListener("change", (event) => {
    if (event.target.matches("#f-q, #f-label")) return;
    applyFilters();
  });
  form.addEventListener("input", (event) => {
    if (event.target.matches("#f-q, #f-label")) applySoon();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters();
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    state.filters = {};
    fillForm();
    state.cursor = "";
    pushUrl(false);
    load();
  });

  SY.$("#page-older").addEventListener("click", () => {
    if (!state.next || state.next === "more") {
      if (state.next === "more") load();
      return;
    }
    state.cursor = state.next;
    pushUrl(false);
    load();
    window.scrollTo(0, 0);
  });
  SY.$("#page-newer").addEventListener("click", () => {
    if (!state.previous) return;
    state.cursor = state.previous;
    pushUrl(false);
    load();
    window.scrollTo(0, 0);
  });

  window.addEventListener("popstate", () => {
    const params = new URLSearchParams(location.search);
    state.filters = {};
    for (const key of FILTER_KEYS) state.filters[key] = params.get(key) || "";
    state.cursor = params.get("cursor") || "";
    fillForm();
    updateExportLinks();
    load();
  });

  // Initial render from the page's embedded first page; then follow the `executions` group.
  fillForm();
  updateExportLinks();
  if (boot.errors && boot.errors.length) showError(boot.errors);
  setPage(boot.page || { results: [] });
  SY.live.subscribe("executions", null, {
    message: (message) => {
      if (message.type === "execution.changed") onChanged(message);
      else if (message.type === "execution.deleted") onDeleted(message);
    },
    subscribed: (message) => {
      if (message.seq > state.seq) load(); // something changed between render and subscribe
      state.seq = Math.max(state.seq, message.seq);
    },
    resync: () => load(),
  });
})();
