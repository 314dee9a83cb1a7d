// Analytics page: loads /api/v1/analytics/summary and /flaky for the window in the URL and draws
// Chart.js charts whose colours come from the theme's CSS variables (redrawn on theme change).
"use strict";

(function () {
  const SY = window.SY;
  const charts = {};
  let summary = null;

  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const palette = () => ({
    text: css("--text"),
    muted: css("--muted"),
    grid: css("--border"),
    completed: css("--st-completed-solid"),
    failed: css("--st-failed-solid"),
    other: css("--st-cancelled-solid"),
    accent: css("--accent"),
    warn: css("--st-timed_out-solid"),
  });

  // `?since=YYYY-MM-DD&until=YYYY-MM-DD` (until inclusive) → API datetimes (until exclusive).
  function apiQuery() {
    const page = new URLSearchParams(location.search);
    const query = new URLSearchParams();
    if (page.get("since")) query.set("since", `${page.get("since")}T00:00:00Z`);
    if (page.get("until")) {
      const end = new Date(`${page.get("until")}T00:00:00Z`);
      if (!Number.isNaN(end.getTime())) {
        end.setUTCDate(end.getUTCDate() + 1);
        query.set("until", end.toISOString());
      }
    }
    if (page.get("workflow")) query.set("workflow", page.get("workflow"));
    return query.toString();
  }

  const seconds = (ms) => (ms === null || ms === undefined ? "—" : SY.duration(ms));
  const percent = (rate) => (rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`);

  function axes(p, stacked, yTitle) {
    const axis = (title) => ({
      stacked,
      ticks: { color: p.muted },
      grid: { color: p.grid },
      title: title ? { display: true, text: title, color: p.muted } : undefined,
    });
    return { x: axis(), y: { ...axis(yTitle), beginAtZero: true } };
  }

  function baseOptions(p, extra) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: { legend: { labels: { color: p.text } } },
      ...extra,
    };
  }

  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    charts[id] = new window.Chart(document.getElementById(id), config);
    document.getElementById(id).dataset.points = String(
      config.data.datasets.reduce((n, set) => n + set.data.length, 0),
    );
  }

  function drawPerDay(p) {
    const days = summary.per_day;
    draw("chart-per-day", {
      type: "bar",
      data: {
        labels: days.map((d) => d.day),
        datasets: [
          { label: "Completed", data: days.map((d) => d.completed), backgroundColor: p.completed },
          { label: "Failed or timed out", data: days.map((d) => d.failed), backgroundColor: p.failed },
          { label: "Other", data: days.map((d) => d.other), backgroundColor: p.other },
        ],
      },
      options: baseOptions(p, { scales: axes(p, true, "executions") }),
    });
  }

  function drawTop(p) {
    const rows = summary.top_workflows;
    draw("chart-top", {
      type: "bar",
      data: {
        labels: rows.map((r) => r.workflow),
        datasets: [
          { label: "Completed", data: rows.map((r) => r.completed), backgroundColor: p.completed },
          { label: "Failed", data: rows.map((r) => r.failed), backgroundColor: p.failed },
          { label: "Other", data: rows.map((r) => r.runs - r.completed - r.failed), backgroundColor: p.other },
        ],
      },
      options: baseOptions(p, { indexAxis: "y", scales: axes(p, true) }),
    });
    SY.replace(
      document.getElementById("top-rows"),
      rows.length
        ? rows.map((r) =>
            SY.el("tr", {},
              SY.el("td", {}, SY.el("a", { class: "row-link", href: `/executions/?workflow=${encodeURIComponent(r.workflow)}` }, r.workflow)),
              SY.el("td", { class: "num" }, String(r.runs)),
              SY.el("td", { class: "num" }, String(r.failed)),
              SY.el("td", { class: "num" }, percent(r.success_rate)),
            ),
          )
        : SY.el("tr", {}, SY.el("td", { colspan: "4", class: "muted" }, "No executions in this window.")),
    );
  }

  function drawTrend(p) {
    const picker = document.getElementById("trend-workflow");
    const slugs = [...new Set(summary.duration_trend.map((row) => row.workflow))];
    if (picker.options.length !== slugs.length) {
      SY.replace(picker, slugs.map((slug) => SY.el("option", { value: slug }, slug)));
    }
    const rows = summary.duration_trend.filter((row) => row.workflow === picker.value);
    draw("chart-trend", {
      type: "line",
      data: {
        labels: rows.map((r) => r.day),
        datasets: [
          { label: "p50 (s)", data: rows.map((r) => r.p50_ms / 1000), borderColor: p.accent, backgroundColor: p.accent },
          { label: "p95 (s)", data: rows.map((r) => r.p95_ms / 1000), borderColor: p.warn, backgroundColor: p.warn },
        ],
      },
      options: baseOptions(p, { scales: axes(p, false, "seconds") }),
    });
  }

  function drawUsage(id, rows, key, p) {
    draw(id, {
      type: "bar",
      data: {
        labels: rows.map((r) => r[key]),
        datasets: [
          { label: "Busy time (h)", data: rows.map((r) => r.busy_ms / 3600000), backgroundColor: p.accent, yAxisID: "y" },
          { label: "Jobs", data: rows.map((r) => r.jobs), backgroundColor: p.other, yAxisID: "jobs" },
        ],
      },
      options: baseOptions(p, {
        scales: {
          ...axes(p, false, "hours"),
          jobs: { position: "right", beginAtZero: true, ticks: { color: p.muted }, grid: { display: false }, title: { display: true, text: "jobs", color: p.muted } },
        },
      }),
    });
  }

  function drawAll() {
    if (!summary || !window.Chart) return;
    const p = palette();
    drawPerDay(p);
    drawTop(p);
    drawTrend(p);
    drawUsage("chart-agents", summary.agent_utilisation, "agent", p);
    drawUsage("chart-pools", summary.pool_utilisation, "pool", p);
  }

  function showStats() {
    document.getElementById("stat-total").textContent = String(summary.total_executions);
    document.getElementById("stat-success").textContent = percent(summary.success_rate);
    document.getElementById("stat-duration").textContent = `${seconds(summary.duration_ms.avg)} / ${seconds(summary.duration_ms.p95)}`;
    document.getElementById("stat-workflows").textContent = String(summary.active_workflows);
    document.getElementById("analytics-window").textContent =
      `Executions created from ${SY.exactTime(summary.since)} to ${SY.exactTime(summary.until)}` +
      (summary.workflows.length ? ` in ${summary.workflows.join(", ")}` : "") + ".";
  }

  function showFlaky(report) {
    const rows = report.nodes.map((n) =>
      SY.el("tr", {},
        SY.el("td", {}, SY.el("a", { href: `/workflows/${encodeURIComponent(n.workflow)}/` }, n.workflow)),
        SY.el("td", {}, SY.el("code", {}, n.node)),
        SY.el("td", { class: "num" }, String(n.runs)),
        SY.el("td", { class: "num" }, String(n.flaky_runs)),
        SY.el("td", { class: "num" }, String(n.alternating_runs)),
        SY.el("td", { class: "num" }, percent(n.share)),
        SY.el("td", { class: "evidence-links" },
          n.evidence.map((id) => SY.el("a", { href: `/executions/${id}/`, title: id }, id.slice(0, 8)))),
      ),
    );
    SY.replace(
      document.getElementById("flaky-rows"),
      rows.length ? rows : SY.el("tr", {}, SY.el("td", { colspan: "7", class: "muted" }, "No flaky steps in this window.")),
    );
  }

  async function load() {
    const query = apiQuery();
    const stats = document.getElementById("analytics-stats");
    try {
      const [data, flaky] = await Promise.all([
        SY.get(`/api/v1/analytics/summary/?${query}`),
        SY.get(`/api/v1/analytics/flaky/?${query}`),
      ]);
      summary = data;
      showStats();
      drawAll();
      showFlaky(flaky);
      stats.dataset.state = "loaded";
    } catch (error) {
      const box = document.getElementById("analytics-error");
      box.textContent = error.message;
      box.hidden = false;
      stats.dataset.state = "error";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.page !== "analytics") return;
    document.getElementById("trend-workflow").addEventListener("change", () => drawTrend(palette()));
    document.addEventListener("sy:theme", drawAll);
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", drawAll);
    load();
  });
})();
