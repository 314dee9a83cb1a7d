// Agents: the fleet table and pools (live via the `agents` group), enrollment tokens (admins),
// and the agent detail page's live status.
"use strict";

(function () {
  const SY = window.SY;
  const boot = SY.boot("boot") || {};

  function statusEl(status) {
    return SY.el("span", { class: `agent-status ${status}` }, status);
  }

  // ------------------------------------------------------------------------ detail page
  if (!SY.$("#agents-body")) {
    for (const cell of SY.$$("[data-duration-ms]")) {
      if (cell.dataset.durationMs) cell.textContent = SY.duration(Number(cell.dataset.durationMs));
    }
    for (const node of SY.$$("time[data-rel]")) node.textContent = SY.relativeTime(node.getAttribute("datetime"));
    const name = boot.agent && boot.agent.name;
    const refresh = SY.coalesce(async () => {
      const data = await SY.get("/api/v1/agents/");
      const agent = (data.results || []).find((a) => a.name === name);
      if (!agent) return;
      const badge = SY.$("#agent-status");
      badge.className = `agent-status ${agent.status}`;
      badge.textContent = agent.status;
      SY.$("#agent-running").textContent = String((agent.running_jobs || []).length);
      SY.replace(SY.$("#agent-heartbeat"), SY.timeEl(agent.last_heartbeat));
    });
    SY.live.subscribe("agents", null, {
      message: (message) => { if (message.agent === name) refresh(); },
      resync: () => refresh(),
    });
    return;
  }

  // ------------------------------------------------------------------------ list page
  let agents = boot.agents || [];
  let pools = boot.pools || [];

  function renderStats() {
    const online = agents.filter((a) => a.status === "online").length;
    const running = agents.reduce((n, a) => n + (a.running_jobs || []).length, 0);
    const stat = (label, value, cls) => SY.el("div", { class: "card stat-card" }, SY.el("div", { class: "stat-label" }, label), SY.el("div", { class: `stat-value ${cls || ""}` }, String(value)));
    SY.replace(SY.$("#agent-stats"),
      stat("Online", `${online} / ${agents.length}`),
      stat("Offline", agents.filter((a) => a.status === "offline").length),
      stat("Running jobs", running),
      stat("Pools", pools.length));
  }

  function render() {
    renderStats();
    const body = SY.$("#agents-body");
    SY.clear(body);
    for (const agent of agents) {
      body.appendChild(SY.el("tr", { dataset: { agent: agent.name, status: agent.status } },
        SY.el("td", {}, SY.el("a", { class: "row-link", href: `/agents/${encodeURIComponent(agent.name)}/` }, agent.name), agent.hostname ? SY.el("div", { class: "small muted" }, agent.hostname) : null),
        SY.el("td", {}, statusEl(agent.status)),
        SY.el("td", {}, SY.el("div", { class: "chips" }, (agent.pools || []).map((p) => SY.el("span", { class: "chip" }, p)))),
        SY.el("td", { class: "hide-sm" }, SY.el("div", { class: "chips" }, Object.entries(agent.labels || {}).map(([k, v]) => SY.el("span", { class: "chip" }, SY.el("span", { class: "chip-key" }, `${k}=`), v)))),
        SY.el("td", { class: "hide-sm muted" }, agent.version || "—"),
        SY.el("td", { class: "num" }, String((agent.running_jobs || []).length)),
        SY.el("td", {}, SY.timeEl(agent.last_heartbeat))));
    }
    SY.$("#agents-empty").hidden = agents.length > 0;
    const poolBody = SY.$("#pools-body");
    SY.clear(poolBody);
    for (const pool of pools) {
      const members = pool.agents || [];
      const online = agents.filter((a) => members.includes(a.name) && a.status === "online").length;
      poolBody.appendChild(SY.el("tr", {},
        SY.el("td", {}, SY.el("strong", {}, pool.name)),
        SY.el("td", {}, SY.el("span", { class: `agent-status ${online ? "online" : "offline"}` }, `${online} online`)),
        SY.el("td", {}, SY.el("div", { class: "chips" }, members.map((m) => SY.el("a", { class: "chip", href: `/agents/${encodeURIComponent(m)}/` }, m)))),
        SY.el("td", { class: "hide-sm muted" }, pool.description || "")));
    }
    if (!pools.length) poolBody.appendChild(SY.el("tr", {}, SY.el("td", { colspan: 4, class: "muted" }, "No pools yet.")));
  }

  const refresh = SY.coalesce(async () => {
    const [agentData, poolData] = await Promise.all([SY.get("/api/v1/agents/"), SY.get("/api/v1/pools/")]);
    agents = agentData.results || [];
    pools = poolData.results || [];
    render();
  });

  render();
  SY.live.subscribe("agents", null, { message: () => refresh(), resync: () => refresh(), subscribed: () => refresh() });

  // ------------------------------------------------------------------------ enrollment tokens
  if (!boot.isAdmin) return;
  const tokensBody = SY.$("#tokens-body");

  async function loadTokens() {
    const data = await SY.get("/api/v1/agents/enrollment-tokens/");
    SY.clear(tokensBody);
    for (const token of data.results || []) {
      const usable = !token.revoked_at && (!token.expires_at || new Date(token.expires_at) > new Date()) && (token.max_uses === null || token.uses < token.max_uses);
      tokensBody.appendChild(SY.el("tr", {},
        SY.el("td", {}, SY.el("code", {}, `${token.prefix}…`)),
        SY.el("td", {}, token.description || SY.el("span", { class: "muted" }, "—")),
        SY.el("td", {}, (token.pools || []).join(", ") || SY.el("span", { class: "muted" }, "any")),
        SY.el("td", { class: "num" }, `${token.uses}${token.max_uses ? ` / ${token.max_uses}` : ""}`),
        SY.el("td", {}, token.expires_at ? SY.timeEl(token.expires_at) : SY.el("span", { class: "muted" }, "never")),
        SY.el("td", {}, token.revoked_at ? SY.badge("cancelled") : usable ? SY.el("span", { class: "agent-status online" }, "usable") : SY.el("span", { class: "agent-status disabled" }, "used up")),
        SY.el("td", {}, token.revoked_at ? null : SY.el("button", {
          type: "button", class: "button button-small button-danger", onclick: async () => {
            if (!(await SY.confirm({ title: "Revoke this enrollment token?", text: "Agents can no longer register with it. Registered agents keep working.", ok: "Revoke", danger: true }))) return;
            try {
              await SY.post(`/api/v1/agents/enrollment-tokens/${token.id}/revoke/`);
              loadTokens();
            } catch (error) {
              SY.toast(error.message, "error");
            }
          },
        }, "Revoke"))));
    }
    if (!(data.results || []).length) tokensBody.appendChild(SY.el("tr", {}, SY.el("td", { colspan: 7, class: "muted" }, "No enrollment tokens.")));
  }

  SY.$("#enroll-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { description: SY.$("#enroll-description").value.trim() };
    const poolsText = SY.$("#enroll-pools").value.trim();
    if (poolsText) body.pools = poolsText.split(",").map((p) => p.trim()).filter(Boolean);
    const max = SY.$("#enroll-max").value;
    if (max) body.max_uses = Number(max);
    const expires = SY.$("#enroll-expires").value;
    if (expires) body.expires_at = new Date(expires).toISOString();
    try {
      const created = await SY.post("/api/v1/agents/enrollment-tokens/", body);
      const copy = SY.el("button", { type: "button", class: "button button-small", onclick: async () => {
        try {
          await navigator.clipboard.writeText(created.token);
          SY.toast("Copied", "success");
        } catch (e) {
          SY.toast("Copy failed: select the token and copy it", "error");
        }
      } }, "Copy");
      SY.replace(SY.$("#enroll-result"), SY.el("div", { class: "token-box", role: "status" },
        SY.el("strong", {}, "New token (shown once):"), SY.el("code", { id: "new-token" }, created.token), copy,
        SY.el("div", { class: "small muted" }, `switchyard-agent register --url ${location.origin} --enrollment-token ${created.token} --name <agent-name>`)));
      event.target.reset();
      loadTokens();
    } catch (error) {
      SY.toast(error.message, "error");
    }
  });
  loadTokens();
})();
