// Execution detail: live status, job timeline + Gantt, graph, streaming job output, log,
// approvals, actions. State comes embedded in the page, then from the `execution.<id>` group:
// `execution.events` (log events + status; we then re-read the light state snapshot) and
// `job.output` (chunks for the open job). After a reconnect the page asks for the events after
// the last `seq` it saw and for the open job's output after its last chunk.
"use strict";

(function () {
  const SY = window.SY;
  const boot = SY.boot("boot");
  const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
  const JOB_TERMINAL = new Set(["completed", "failed", "timeout", "cancelled"]);
  const LEVELS = ["debug", "info", "warning", "error"];

  const state = {
    exec: boot.state,
    relations: boot.relations || {},
    rights: boot.approvalRights || {},
    log: boot.log || [],
    logIds: new Set((boot.log || []).map((e) => e.id)),
    seq: Math.max(0, ...(boot.log || []).map((e) => e.id)),
    selectedJob: null,
    userSelected: false,
    tab: "jobs",
    graphDirty: true,
  };
  const id = state.exec.id;

  // ---------------------------------------------------------------------------- helpers

  const jobsOf = () => state.exec.jobs || [];
  const jobById = (jobId) => jobsOf().find((j) => j.id === jobId);
  const nodeDef = (nodeId) => ((state.exec.definition || {}).nodes || []).find((n) => String(n.id) === nodeId) || {};
  const isTerminal = () => TERMINAL.has(state.exec.status);

  function jobIcon(job) {
    if (job.status === "running") return SY.statusIcon("running", "running");
    if (job.attempt > 1 && !JOB_TERMINAL.has(job.status)) return SY.statusIcon("pending", `retry ${job.attempt} pending`);
    return SY.statusIcon(job.status, SY.statusLabel(job.status));
  }

  function maxAttempts(nodeId) {
    const retries = nodeDef(nodeId).retries;
    const max = retries && typeof retries === "object" ? Number(retries.max || 0) : Number(retries || 0);
    return isNaN(max) ? 1 : max + 1;
  }

  // ---------------------------------------------------------------------------- banner + header

  function renderBanner() {
    const e = state.exec;
    const banner = SY.$("#status-banner");
    banner.className = `status-banner st-${e.status}`;
    const jobs = jobsOf();
    const done = jobs.filter((j) => JOB_TERMINAL.has(j.status)).length;
    const trigger = SY.triggerText(e.trigger);
    const meta = SY.el("dl", { class: "status-meta" },
      SY.el("div", {}, SY.el("dt", {}, "Started"), SY.el("dd", {}, e.started_at ? SY.timeEl(e.started_at) : SY.el("span", {}, "not yet"))),
      SY.el("div", {}, SY.el("dt", {}, "Duration"), SY.el("dd", {}, SY.durationEl(e.started_at, e.finished_at, e.duration_ms))),
      SY.el("div", {}, SY.el("dt", {}, "Jobs"), SY.el("dd", {}, `${done}/${jobs.length}`)),
      SY.el("div", {}, SY.el("dt", {}, "Trigger"), SY.el("dd", {}, trigger.kind, trigger.who ? SY.el("span", { class: "muted" }, ` · ${trigger.who}`) : null)));
    const icon = e.status === "running" ? SY.el("span", { class: "status-spinner", "aria-hidden": "true" }) : SY.el("span", { "aria-hidden": "true" }, SY.STATUS_ICONS[e.status] || "•");
    SY.replace(banner,
      SY.el("span", { class: "status-icon" }, icon),
      SY.el("span", { class: "status-word", id: "status-word", dataset: { status: e.status } }, SY.statusLabel(e.status)),
      meta,
      e.error ? SY.el("div", { class: "error-line" }, e.error) : null);
  }

  function renderActions() {
    const terminal = isTerminal();
    SY.$("#act-cancel").hidden = terminal;
    SY.$("#act-kill").hidden = terminal;
    SY.$("#act-diagnose").hidden = !["failed", "timed_out"].includes(state.exec.status);
    SY.$("#act-replay").hidden = !terminal;
    SY.$("#act-delete").hidden = !terminal;
    const rel = state.relations;
    const prev = SY.$("#prev-run");
    const next = SY.$("#next-run");
    prev.hidden = !rel.previous;
    next.hidden = !rel.next;
    if (rel.previous) prev.href = `/executions/${rel.previous.id}/`;
    if (rel.next) next.href = `/executions/${rel.next.id}/`;
    document.title = `${SY.statusLabel(state.exec.status)} · ${state.exec.workflow} #${SY.shortId(id)} · Switchyard`;
  }

  // ---------------------------------------------------------------------------- approvals

  function renderApprovals() {
    const box = SY.$("#approvals");
    SY.clear(box);
    for (const approval of (state.exec.approvals || []).filter((a) => a.status === "pending")) {
      const refusal = state.rights[String(approval.id)];
      const note = SY.el("textarea", { id: `approval-note-${approval.id}`, placeholder: "Note (optional)", "aria-label": "Decision note" });
      const decide = async (approve) => {
        const verb = approve ? "approve" : "reject";
        try {
          await SY.post(`/api/v1/approvals/${approval.id}/${verb}/`, { note: note.value });
          SY.toast(approve ? "Approved" : "Rejected", approve ? "success" : undefined);
          refreshState();
        } catch (error) {
          SY.toast(error.message, "error");
        }
      };
      const approvers = approval.approvers || {};
      const who = [...(approvers.users || []).map((u) => `@${u}`), ...(approvers.groups || []).map((g) => `group ${g}`)].join(", ");
      const votes = (approval.votes || []).length;
      box.appendChild(SY.el("section", { class: "approval-card", "aria-label": `Approval ${approval.node_id}`, dataset: { approval: String(approval.id) } },
        SY.el("h2", {}, SY.el("span", { "aria-hidden": "true" }, "‖"), `Waiting for approval: ${approval.node_id}`),
        approval.message ? SY.el("div", { class: "message" }, approval.message) : null,
        SY.el("div", { class: "meta" },
          `Approvers: ${who || "anyone with the approvals.respond permission"} · quorum ${approval.quorum}${votes ? ` · ${votes} vote${votes === 1 ? "" : "s"} so far` : ""}`,
          approval.expires_at ? SY.el("span", {}, " · expires ", SY.timeEl(approval.expires_at)) : null),
        refusal ? SY.el("div", { class: "refusal" }, `You cannot decide this request: ${refusal}.`) : null,
        note,
        SY.el("div", { class: "row" },
          SY.el("button", { type: "button", class: "button button-approve", disabled: !!refusal, onclick: () => decide(true) }, "Approve"),
          SY.el("button", { type: "button", class: "button button-danger", disabled: !!refusal, onclick: () => decide(false) }, "Reject"))));
    }
  }

  // ---------------------------------------------------------------------------- timeline + gantt

  function ganttRange() {
    const jobs = jobsOf();
    const times = [];
    for (const job of jobs) {
      for (const key of ["queued_at", "started_at", "finished_at"]) if (job[key]) times.push(new Date(job[key]).getTime());
    }
    if (state.exec.started_at) times.push(new Date(state.exec.started_at).getTime());
    if (!times.length) return null;
    const start = Math.min(...times);
    let end = Math.max(...times);
    if (!isTerminal() || jobs.some((j) => !j.finished_at && j.started_at)) end = Math.max(end, Date.now());
    if (state.exec.finished_at) end = Math.max(end, new Date(state.exec.finished_at).getTime());
    return { start, end: Math.max(end, start + 1000) };
  }

  function placeBars(now) {
    const range = ganttRange();
    const axis = SY.$("#gantt-axis");
    if (!range) {
      axis.hidden = true;
      return;
    }
    const span = range.end - range.start;
    const pos = (t) => (100 * (t - range.start)) / span;
    for (const track of SY.$$(".gantt-track[data-job]")) {
      const job = jobById(track.dataset.job);
      if (!job) continue;
      const queued = job.queued_at ? new Date(job.queued_at).getTime() : null;
      const started = job.started_at ? new Date(job.started_at).getTime() : null;
      const finished = job.finished_at ? new Date(job.finished_at).getTime() : (started && !JOB_TERMINAL.has(job.status) ? now : null);
      const wait = SY.$(".gantt-bar.queued", track);
      const run = SY.$(".gantt-bar.run", track);
      const waitEnd = started || finished || now;
      if (queued !== null && waitEnd > queued) {
        wait.hidden = false;
        wait.style.left = `${pos(queued)}%`;
        wait.style.width = `${Math.max(0.3, pos(waitEnd) - pos(queued))}%`;
      } else {
        wait.hidden = true;
      }
      if (started !== null) {
        run.hidden = false;
        run.style.left = `${pos(started)}%`;
        run.style.width = `${Math.max(0.4, pos(finished || started) - pos(started))}%`;
      } else {
        run.hidden = true;
      }
    }
    axis.hidden = false;
    SY.replace(axis, SY.el("span", {}, "0s"), SY.el("span", {}, SY.duration(span / 2)), SY.el("span", {}, SY.duration(span)));
  }

  function renderTimeline() {
    const tbody = SY.$("#timeline-body");
    const jobs = jobsOf();
    SY.$("#count-jobs").textContent = String(jobs.length);
    SY.$("#jobs-empty").hidden = jobs.length > 0;
    SY.clear(tbody);
    for (const job of jobs) {
      const selected = state.selectedJob === job.id;
      const track = SY.el("div", { class: "gantt-track", dataset: { job: job.id }, title: `queued ${SY.exactTime(job.queued_at)}${job.started_at ? ` · started ${SY.exactTime(job.started_at)}` : ""}${job.finished_at ? ` · finished ${SY.exactTime(job.finished_at)}` : ""}` },
        SY.el("div", { class: `gantt-bar queued st-${job.status}`, hidden: true }),
        SY.el("div", { class: `gantt-bar run st-${job.status}`, hidden: true }));
      const attempts = maxAttempts(job.node_id);
      const tr = SY.el("tr", {
        class: `job-row${job.attempt > 1 ? " retry-row" : ""}`,
        "aria-selected": selected ? "true" : "false",
        tabindex: 0,
        dataset: { job: job.id, node: job.node_id, status: job.status },
        onclick: () => selectJob(job.id, true),
        onkeydown: (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            selectJob(job.id, true);
          }
        },
      },
      SY.el("td", {}, SY.el("div", { class: "node-cell" }, jobIcon(job),
        job.attempt > 1 ? SY.el("span", { class: "st-icon st-pending", title: "retry", "aria-label": "retry" }, "↻") : null,
        SY.el("span", { class: "node-id" }, job.node_id),
        attempts > 1 || job.attempt > 1 ? SY.el("span", { class: "attempt", title: "attempt" }, `${job.attempt}/${Math.max(attempts, job.attempt)}`) : null)),
      SY.el("td", { class: "hide-sm muted" }, job.action),
      SY.el("td", {}, SY.badge(job.status), job.wait_reason && !JOB_TERMINAL.has(job.status) ? SY.el("div", { class: "small muted" }, job.wait_reason) : null),
      SY.el("td", { class: "num" }, SY.durationEl(job.started_at, job.finished_at, job.duration_ms)),
      SY.el("td", { class: "hide-sm muted small" }, job.agent || job.pool || "—"),
      SY.el("td", { class: "gantt-col hide-sm" }, track));
      tbody.appendChild(tr);
    }
    placeBars(Date.now());
  }

  SY.tickHooks.push((now) => {
    if (!isTerminal() && state.tab === "jobs") placeBars(now);
  });

  // ---------------------------------------------------------------------------- graph

  function renderGraph() {
    if (state.tab !== "graph") {
      state.graphDirty = true;
      return;
    }
    state.graphDirty = false;
    const graph = SY.graphFromDefinition(state.exec.definition);
    const status = {};
    const sub = {};
    for (const node of state.exec.nodes || []) {
      status[node.id] = node.status;
      sub[node.id] = node.action || node.type;
    }
    SY.renderGraph(SY.$("#graph"), graph, {
      status,
      sub,
      label: `Graph of ${state.exec.workflow}`,
      onClick: (nodeId) => {
        const jobs = jobsOf().filter((j) => j.node_id === nodeId);
        if (!jobs.length) {
          SY.toast(`${nodeId} has no job (${(state.exec.nodes.find((n) => n.id === nodeId) || {}).status || "pending"})`);
          return;
        }
        tabs.select("jobs");
        selectJob(jobs[jobs.length - 1].id, true);
        SY.$("#job-panel").scrollIntoView({ block: "start", behavior: "smooth" });
      },
    });
  }

  // ---------------------------------------------------------------------------- job panel

  const terminal = new SY.Terminal(SY.$("#terminal"));
  const output = { jobId: null, lastSeq: 0, loading: false, queue: [] };

  function preferredJob() {
    const jobs = jobsOf();
    if (!jobs.length) return null;
    const running = jobs.filter((j) => j.status === "running");
    if (running.length) return running[running.length - 1];
    const failed = jobs.filter((j) => j.status === "failed" || j.status === "timeout");
    if (failed.length) return failed[failed.length - 1];
    return jobs[jobs.length - 1];
  }

  function selectJob(jobId, byUser) {
    if (byUser) state.userSelected = true;
    const changed = state.selectedJob !== jobId;
    state.selectedJob = jobId;
    for (const tr of SY.$$("#timeline-body tr.job-row")) tr.setAttribute("aria-selected", tr.dataset.job === jobId ? "true" : "false");
    if (byUser) {
      const url = new URL(location.href);
      url.searchParams.set("job", jobId);
      history.replaceState(null, "", url);
    }
    renderJobPanel();
    if (changed) loadOutput(jobId);
  }

  function fact(label, value) {
    return SY.el("div", {}, SY.el("span", {}, label), SY.el("span", {}, value));
  }

  function renderJobPanel() {
    const job = jobById(state.selectedJob);
    const panel = SY.$("#job-panel");
    panel.hidden = !job;
    if (!job) return;
    SY.replace(SY.$("#job-icon"), jobIcon(job));
    SY.$("#job-title").textContent = `${job.node_id}`;
    SY.replace(SY.$("#job-badge"), SY.badge(job.status));
    const attempts = jobsOf().filter((j) => j.node_id === job.node_id);
    const select = SY.$("#job-attempt");
    SY.clear(select);
    for (const attempt of attempts) select.appendChild(SY.el("option", { value: attempt.id, selected: attempt.id === job.id }, `#${attempt.attempt} · ${SY.statusLabel(attempt.status)}`));
    select.disabled = attempts.length < 2;
    SY.replace(SY.$("#job-facts"),
      fact("Action", job.action),
      fact("Exit code", job.exit_code === null || job.exit_code === undefined ? "—" : String(job.exit_code)),
      fact("Duration", SY.durationEl(job.started_at, job.finished_at, job.duration_ms)),
      fact("Agent", job.agent || "—"),
      fact("Pool / queue", job.pool || job.queue || "—"),
      fact("Queued", SY.timeEl(job.queued_at)),
      fact("Started", SY.timeEl(job.started_at)),
      job.error_kind ? fact("Error kind", job.error_kind) : null);
    const error = SY.$("#job-error");
    error.hidden = !job.error;
    error.textContent = job.error || "";
    renderResult(job);
    renderHttp(job);
    SY.replace(SY.$("#job-params"), SY.el("div", { class: "section-title" }, "Rendered parameters"), SY.jsonView(job.params || {}),
      Object.keys(job.labels || {}).length ? [SY.el("div", { class: "section-title" }, "Agent labels required"), SY.jsonView(job.labels)] : null,
      job.timeout_s ? SY.el("p", { class: "small muted" }, `Timeout ${SY.duration(job.timeout_s * 1000)}`) : null);
    updateTerminalStatus();
  }

  function renderResult(job) {
    const box = SY.$("#job-result");
    SY.clear(box);
    box.appendChild(SY.el("div", { class: "section-title" }, "Outputs"));
    box.appendChild(Object.keys(job.outputs || {}).length ? SY.jsonView(job.outputs) : SY.el("p", { class: "muted small" }, "No outputs."));
    box.appendChild(SY.el("div", { class: "section-title" }, "Assertions"));
    const assertions = job.assertions || [];
    if (!assertions.length) {
      box.appendChild(SY.el("p", { class: "muted small" }, "No assertions."));
    } else {
      box.appendChild(SY.el("table", { class: "assertions" },
        SY.el("thead", {}, SY.el("tr", {}, SY.el("th", {}, "Expression"), SY.el("th", {}, "Value"), SY.el("th", {}, "Result"))),
        SY.el("tbody", {}, assertions.map((a) => SY.el("tr", {},
          SY.el("td", {}, SY.el("code", {}, a.expression || a.expr || "")),
          SY.el("td", {}, SY.el("code", {}, a.error ? a.error : JSON.stringify(a.value))),
          SY.el("td", {}, a.passed || a.ok ? SY.el("span", { class: "pass" }, "✓ pass") : SY.el("span", { class: "fail" }, "✗ fail")))))));
    }
    if (job.error) {
      box.appendChild(SY.el("div", { class: "section-title" }, "Error"));
      box.appendChild(SY.el("div", { class: "error-box" }, job.error));
    }
  }

  function renderHttp(job) {
    const box = SY.$("#job-http");
    SY.clear(box);
    const http = job.http;
    const params = job.params || {};
    if (!http && job.action !== "http" && job.action !== "notify") {
      box.appendChild(SY.el("p", { class: "muted small" }, "This job made no HTTP request."));
      return;
    }
    box.appendChild(SY.el("div", { class: "section-title" }, "Request"));
    box.appendChild(SY.el("dl", { class: "kv" },
      SY.el("dt", {}, "method"), SY.el("dd", {}, params.method || "GET"),
      SY.el("dt", {}, "url"), SY.el("dd", {}, params.url || "—"),
      params.headers ? [SY.el("dt", {}, "headers"), SY.el("dd", {}, JSON.stringify(params.headers, null, 2))] : null,
      params.json !== undefined ? [SY.el("dt", {}, "json"), SY.el("dd", {}, JSON.stringify(params.json, null, 2))] : null,
      params.body !== undefined ? [SY.el("dt", {}, "body"), SY.el("dd", {}, String(params.body))] : null));
    box.appendChild(SY.el("div", { class: "section-title" }, "Response"));
    if (!http) {
      box.appendChild(SY.el("p", { class: "muted small" }, "No response yet."));
      return;
    }
    box.appendChild(SY.el("dl", { class: "kv" },
      SY.el("dt", {}, "status"), SY.el("dd", {}, String(http.status ?? "—")),
      http.elapsed_ms !== undefined ? [SY.el("dt", {}, "elapsed"), SY.el("dd", {}, SY.duration(http.elapsed_ms))] : null,
      http.url ? [SY.el("dt", {}, "final url"), SY.el("dd", {}, http.url)] : null));
    if (http.headers) {
      box.appendChild(SY.el("div", { class: "section-title" }, "Headers"));
      box.appendChild(SY.jsonView(http.headers));
    }
    box.appendChild(SY.el("div", { class: "section-title" }, "Body"));
    box.appendChild(http.json !== undefined && http.json !== null ? SY.jsonView(http.json) : SY.el("pre", { class: "json-view" }, http.body || ""));
  }

  function updateTerminalStatus() {
    const job = jobById(output.jobId);
    const statusBox = SY.$("#terminal-status");
    if (!job) return SY.clear(statusBox);
    const live = !JOB_TERMINAL.has(job.status);
    SY.replace(statusBox,
      live ? SY.el("span", { class: "badge st-running" }, job.status === "running" ? "streaming" : "waiting for output") : SY.el("span", {}, `Finished: ${SY.statusLabel(job.status)}${job.exit_code !== null && job.exit_code !== undefined ? `, exit code ${job.exit_code}` : ""}`),
      terminal.trimmed ? SY.el("span", {}, ` · ${terminal.trimmed} earlier lines hidden (download for everything)`) : null);
    if (!terminal.lineCount) terminal.showPlaceholder(live ? (job.status === "running" ? "Waiting for output…" : `Job is ${SY.statusLabel(job.status)}.`) : "No output.");
  }

  function follow() {
    const box = SY.$("#terminal");
    if (SY.$("#out-follow").checked) box.scrollTop = box.scrollHeight;
  }

  function writeChunks(chunks) {
    let wrote = false;
    for (const chunk of chunks) {
      if (chunk.seq <= output.lastSeq && terminal.seen.has(chunk.seq)) continue;
      if (terminal.write(chunk.stream, chunk.data, chunk.seq)) wrote = true;
      output.lastSeq = Math.max(output.lastSeq, chunk.seq);
    }
    if (wrote) {
      applyStreamFilter();
      follow();
      if (SY.$("#out-search").value) SY.$("#out-hits").textContent = `${terminal.search(SY.$("#out-search").value, SY.$("#out-only").checked)} matching lines`;
    }
  }

  async function fetchOutput(jobId, after) {
    let cursor = after;
    for (let page = 0; page < 200; page++) {
      const data = await SY.get(`/api/v1/executions/${id}/jobs/${jobId}/output/?after=${cursor}`);
      if (output.jobId !== jobId) return null;
      if (data.chunks && data.chunks.length) {
        writeChunks(data.chunks);
        cursor = data.last_seq;
        if (data.chunks.length < 5000) return data;
      } else {
        if (cursor === 0 && (data.stdout || data.stderr)) {
          // A finished job without live chunks: its stored output.
          if (data.stdout) terminal.write("stdout", data.stdout);
          if (data.stderr) {
            terminal.write("stderr", data.stdout && !data.stdout.endsWith("\n") ? `\n${data.stderr}` : data.stderr);
          }
          applyStreamFilter();
          follow();
        }
        return data;
      }
    }
    return null;
  }

  async function loadOutput(jobId) {
    output.jobId = jobId;
    output.lastSeq = 0;
    output.queue = [];
    output.loading = true;
    terminal.reset();
    SY.$("#out-hits").textContent = "";
    terminal.showPlaceholder("Loading output…");
    try {
      await fetchOutput(jobId, 0);
    } catch (error) {
      terminal.showPlaceholder(`Could not load the output: ${error.message}`);
    } finally {
      if (output.jobId === jobId) {
        output.loading = false;
        const queued = output.queue;
        output.queue = [];
        writeChunks(queued.sort((a, b) => a.seq - b.seq));
        updateTerminalStatus();
      }
    }
  }

  function onOutput(message) {
    const known = jobById(message.job_id);
    if (!known || known.status !== "running") refreshState(); // output means the job runs now
    if (message.job_id !== output.jobId) {
      // Output from a job we are not showing: follow it if the user has not chosen one.
      if (!state.userSelected && jobById(message.job_id) && jobById(message.job_id).status === "running" && !(jobById(output.jobId) || {}).status?.match(/running/)) {
        selectJob(message.job_id, false);
      }
      return;
    }
    if (output.loading) {
      output.queue.push(...message.chunks);
      return;
    }
    writeChunks(message.chunks || []);
    updateTerminalStatus();
  }

  function applyStreamFilter() {
    const showOut = SY.$("#out-stdout").checked;
    const showErr = SY.$("#out-stderr").checked;
    SY.$("#terminal").classList.toggle("hide-stdout", !showOut);
    SY.$("#terminal").classList.toggle("hide-stderr", !showErr);
    for (const line of SY.$$("#terminal .line")) {
      const hidden = (line.classList.contains("stderr") && !showErr) || (line.classList.contains("stdout") && !showOut);
      line.hidden = hidden;
    }
  }

  SY.$("#out-stdout").addEventListener("change", applyStreamFilter);
  SY.$("#out-stderr").addEventListener("change", applyStreamFilter);
  SY.$("#out-follow").addEventListener("change", follow);
  SY.$("#terminal").addEventListener("scroll", SY.debounce(() => {
    const box = SY.$("#terminal");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
    const followBox = SY.$("#out-follow");
    if (!atBottom && followBox.checked && box.dataset.userScrolled === "1") followBox.checked = false;
    if (atBottom && !followBox.checked && box.dataset.userScrolled === "1") followBox.checked = true;
  }, 80));
  SY.$("#terminal").addEventListener("wheel", () => (SY.$("#terminal").dataset.userScrolled = "1"), { passive: true });
  SY.$("#terminal").addEventListener("keydown", () => (SY.$("#terminal").dataset.userScrolled = "1"));
  const runSearch = SY.debounce(() => {
    const q = SY.$("#out-search").value;
    const hits = terminal.search(q, SY.$("#out-only").checked);
    SY.$("#out-hits").textContent = q ? `${hits} matching line${hits === 1 ? "" : "s"}` : "";
  }, 150);
  SY.$("#out-search").addEventListener("input", runSearch);
  SY.$("#out-only").addEventListener("change", runSearch);
  SY.$("#out-download").addEventListener("click", async () => {
    const job = jobById(output.jobId);
    if (!job) return;
    try {
      const data = await SY.get(`/api/v1/executions/${id}/jobs/${job.id}/output/`);
      let text;
      if (data.chunks && data.chunks.length && data.stdout === undefined) text = data.chunks.map((c) => c.data).join("");
      else text = `${data.stdout || ""}${data.stderr ? `${data.stdout && !data.stdout.endsWith("\n") ? "\n" : ""}${data.stderr}` : ""}`;
      SY.download(`${state.exec.workflow}-${SY.shortId(id)}-${job.node_id}-${job.attempt}.log`, text);
    } catch (error) {
      SY.toast(error.message, "error");
    }
  });
  SY.$("#job-attempt").addEventListener("change", (event) => selectJob(event.target.value, true));
  SY.tabs(SY.$("#job-tabs"));

  // ---------------------------------------------------------------------------- log

  function logRow(event) {
    return SY.el("div", { class: `log-row lvl-row-${event.level}`, dataset: { id: String(event.id), level: event.level } },
      SY.el("time", { class: "log-time", datetime: event.timestamp, title: SY.exactTime(event.timestamp) }, SY.clockTime(event.timestamp)),
      SY.el("span", { class: `lvl lvl-${event.level}` }, event.level),
      SY.el("span", { class: "log-kind", title: event.kind }, event.kind),
      SY.el("span", { class: "log-msg" }, event.node_id ? SY.el("span", { class: "log-node" }, event.node_id) : null, event.message));
  }

  function logVisible(event) {
    const min = LEVELS.indexOf(SY.$("#log-level").value);
    if (LEVELS.indexOf(event.level) < min) return false;
    const q = SY.$("#log-search").value.trim().toLowerCase();
    if (q && !`${event.kind} ${event.node_id} ${event.message}`.toLowerCase().includes(q)) return false;
    return true;
  }

  function renderLog() {
    const list = SY.$("#log-list");
    SY.clear(list);
    let shown = 0;
    for (const event of state.log) {
      if (!logVisible(event)) continue;
      list.appendChild(logRow(event));
      shown += 1;
    }
    SY.$("#log-empty").hidden = shown > 0;
    SY.$("#count-log").textContent = String(state.log.length);
    if (SY.$("#log-follow").checked) list.scrollTop = list.scrollHeight;
  }

  function addEvents(events) {
    const list = SY.$("#log-list");
    let added = 0;
    for (const event of events) {
      if (state.logIds.has(event.id)) continue;
      state.logIds.add(event.id);
      state.log.push(event);
      state.seq = Math.max(state.seq, event.id);
      added += 1;
      if (logVisible(event)) {
        list.appendChild(logRow(event));
        SY.$("#log-empty").hidden = true;
      }
    }
    if (added) {
      SY.$("#count-log").textContent = String(state.log.length);
      if (SY.$("#log-follow").checked) list.scrollTop = list.scrollHeight;
    }
  }

  SY.$("#log-level").addEventListener("change", renderLog);
  SY.$("#log-search").addEventListener("input", SY.debounce(renderLog, 150));
  async function fullLog() {
    const events = [];
    let url = `/api/v1/executions/${id}/log/?page_size=5000`;
    for (let i = 0; url && i < 100; i++) {
      const page = await SY.get(url);
      events.push(...(page.results || []));
      url = page.next;
    }
    return events;
  }
  SY.$("#log-download").addEventListener("click", async () => {
    try {
      const min = LEVELS.indexOf(SY.$("#log-level").value);
      const events = (await fullLog()).filter((e) => LEVELS.indexOf(e.level) >= min);
      const text = events.map((e) => `${e.timestamp} ${e.level.toUpperCase().padEnd(7)} ${e.kind}${e.node_id ? ` [${e.node_id}]` : ""} ${e.message}`).join("\n");
      SY.download(`${state.exec.workflow}-${SY.shortId(id)}.log`, `${text}\n`);
    } catch (error) {
      SY.toast(error.message, "error");
    }
  });
  SY.$("#log-download-json").addEventListener("click", async () => {
    try {
      SY.download(`${state.exec.workflow}-${SY.shortId(id)}-log.json`, JSON.stringify(await fullLog(), null, 2), "application/json");
    } catch (error) {
      SY.toast(error.message, "error");
    }
  });

  // ---------------------------------------------------------------------------- data + side

  function section(title, value, emptyText) {
    const has = value && (typeof value !== "object" || Object.keys(value).length);
    return [SY.el("div", { class: "section-title" }, title), has ? SY.jsonView(value) : SY.el("p", { class: "muted small" }, emptyText || "None.")];
  }

  function renderData() {
    const e = state.exec;
    const nodes = e.nodes || [];
    SY.replace(SY.$("#data-panel"),
      SY.el("div", { class: "grid grid-2" },
        SY.el("div", {}, section("Inputs", e.inputs, "No inputs.")),
        SY.el("div", {}, section("Outputs", e.outputs, isTerminal() ? "No outputs." : "Outputs are set when the run finishes."))),
      section("Variables", e.vars, "No variables."),
      section("Trigger", e.trigger),
      SY.el("div", { class: "section-title" }, "Nodes"),
      SY.el("table", { class: "assertions" },
        SY.el("thead", {}, SY.el("tr", {}, SY.el("th", {}, "Node"), SY.el("th", {}, "Type"), SY.el("th", {}, "Status"), SY.el("th", {}, "Reason"))),
        SY.el("tbody", {}, nodes.map((n) => SY.el("tr", {}, SY.el("td", {}, SY.el("code", {}, n.id)), SY.el("td", { class: "muted" }, n.action || n.type), SY.el("td", {}, SY.badge(n.status)), SY.el("td", { class: "small" }, n.reason || ""))))));
  }

  function renderSide() {
    const e = state.exec;
    const trigger = SY.triggerText(e.trigger);
    const idBox = SY.el("dd", {}, SY.el("code", {}, e.id));
    SY.replace(SY.$("#run-facts"),
      SY.el("dt", {}, "Workflow"), SY.el("dd", {}, SY.el("a", { href: `/workflows/${e.workflow}/` }, e.workflow), ` v${e.version}`),
      SY.el("dt", {}, "ID"), idBox,
      SY.el("dt", {}, "Trigger"), SY.el("dd", {}, SY.el("strong", {}, trigger.kind), trigger.who ? ` · ${trigger.who}` : ""),
      SY.el("dt", {}, "Created"), SY.el("dd", {}, SY.timeEl(e.created_at), SY.el("div", { class: "small muted" }, SY.exactTime(e.created_at))),
      SY.el("dt", {}, "Started"), SY.el("dd", {}, e.started_at ? SY.exactTime(e.started_at) : "—"),
      SY.el("dt", {}, "Finished"), SY.el("dd", {}, e.finished_at ? SY.exactTime(e.finished_at) : "—"));
    renderLabels();
    renderRelations();
  }

  function runLink(brief, label) {
    if (!brief) return SY.el("span", { class: "muted" }, "—");
    return SY.el("span", {}, SY.el("a", { href: `/executions/${brief.id}/` }, label || `#${SY.shortId(brief.id)}`), " ", SY.badge(brief.status));
  }

  function renderRelations() {
    const rel = state.relations;
    const children = state.exec.children || [];
    SY.replace(SY.$("#relations"),
      SY.el("dt", {}, "Re-run of"), SY.el("dd", {}, runLink(rel.rerunOf)),
      SY.el("dt", {}, "Re-runs"), SY.el("dd", {}, rel.reruns && rel.reruns.length ? SY.el("div", { class: "stack" }, rel.reruns.map((r) => SY.el("div", {}, runLink(r)))) : SY.el("span", { class: "muted" }, "—")),
      rel.parent ? [SY.el("dt", {}, "Parent"), SY.el("dd", {}, runLink(rel.parent, `${rel.parent.workflow} #${SY.shortId(rel.parent.id)}`))] : null,
      children.length ? [SY.el("dt", {}, "Children"), SY.el("dd", {}, children.map((c) => SY.el("div", {}, runLink(c, `${c.workflow} (${c.node_id})`))))] : null,
      SY.el("dt", {}, "Previous"), SY.el("dd", {}, runLink(rel.previous)),
      SY.el("dt", {}, "Next"), SY.el("dd", {}, runLink(rel.next)));
  }

  function renderLabels() {
    const labels = state.exec.labels || {};
    const box = SY.$("#labels");
    SY.clear(box);
    const entries = Object.entries(labels);
    if (!entries.length) box.appendChild(SY.el("span", { class: "muted small" }, "No labels."));
    for (const [key, value] of entries) {
      box.appendChild(SY.el("span", { class: "chip" }, SY.el("span", { class: "chip-key" }, `${key}=`), value,
        SY.el("button", { type: "button", "aria-label": `Remove label ${key}`, title: "Remove", onclick: () => saveLabels(Object.fromEntries(entries.filter(([k]) => k !== key))) }, "×")));
    }
  }

  async function saveLabels(labels) {
    try {
      const data = await SY.api("PATCH", `/api/v1/executions/${id}/`, { labels });
      state.exec.labels = data.labels;
      renderLabels();
    } catch (error) {
      SY.toast(error.message, "error");
    }
  }

  SY.$("#label-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = SY.$("#label-input");
    const raw = input.value.trim();
    if (!raw) return;
    const [key, ...rest] = raw.split("=");
    saveLabels(Object.assign({}, state.exec.labels || {}, { [key.trim()]: rest.join("=").trim() }));
    input.value = "";
  });

  // ---------------------------------------------------------------------------- evaluate

  SY.$("#eval-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const expression = SY.$("#eval-input").value;
    const out = SY.$("#eval-output");
    if (!expression.trim()) return;
    try {
      const data = await SY.post(`/api/v1/executions/${id}/evaluate/`, { expression });
      SY.replace(out, SY.el("div", { class: "eval-result" }, SY.el("div", { class: "section-title" }, "Value"), SY.jsonView(data.value)));
    } catch (error) {
      SY.replace(out, SY.el("div", { class: "eval-error", role: "alert" }, error.message));
    }
  });

  // ---------------------------------------------------------------------------- actions

  async function act(label, fn) {
    try {
      await fn();
    } catch (error) {
      SY.toast(`${label} failed: ${error.message}`, "error");
    }
  }

  SY.$("#act-cancel").addEventListener("click", () => act("Cancel", async () => {
    if (!(await SY.confirm({ title: "Cancel this execution?", text: "Pending work is cancelled and nothing new starts; jobs already running finish.", ok: "Cancel execution", danger: true }))) return;
    await SY.post(`/api/v1/executions/${id}/cancel/`);
    SY.toast("Cancelling…");
    refreshState();
  }));
  SY.$("#act-kill").addEventListener("click", () => act("Kill", async () => {
    if (!(await SY.confirm({ title: "Kill this execution?", text: "Running jobs are terminated on their agents within seconds.", ok: "Kill", danger: true }))) return;
    await SY.post(`/api/v1/executions/${id}/kill/`);
    SY.toast("Killing…");
    refreshState();
  }));
  SY.$("#act-rerun").addEventListener("click", () => act("Re-run", async () => {
    if (!(await SY.confirm({ title: "Re-run this execution?", text: `Runs ${state.exec.workflow} v${state.exec.version} again with the same inputs and labels.`, ok: "Re-run" }))) return;
    const created = await SY.post(`/api/v1/executions/${id}/rerun/`);
    window.location.assign(`/executions/${created.id}/`);
  }));
  SY.$("#act-replay").addEventListener("click", () => act("Replay", async () => {
    const nodes = (state.exec.nodes || []).map((n) => n.id);
    const suggestion = (jobsOf().find((j) => j.status === "failed") || {}).node_id || nodes[0] || "";
    const fromNode = await SY.confirm({
      title: "Replay from a node",
      text: `Nodes outside the chosen node and its descendants keep their results; the chosen node and everything after it run again.\nNodes: ${nodes.join(", ")}`,
      ok: "Replay",
      input: { label: "From node", value: suggestion },
    });
    if (!fromNode) return;
    const created = await SY.post(`/api/v1/executions/${id}/replay/`, { from_node: fromNode });
    window.location.assign(`/executions/${created.id}/`);
  }));
  SY.$("#act-delete").addEventListener("click", () => act("Delete", async () => {
    if (!(await SY.confirm({ title: "Delete this execution?", text: "Its jobs, output and log are deleted. This cannot be undone.", ok: "Delete", danger: true }))) return;
    await SY.api("DELETE", `/api/v1/executions/${id}/`);
    window.location.assign("/executions/");
  }));
  SY.$("#act-export").addEventListener("click", () => act("Export", async () => {
    const data = await SY.get(`/api/v1/executions/${id}/`);
    SY.download(`execution-${state.exec.workflow}-${id}.json`, JSON.stringify(data, null, 2), "application/json");
  }));

  // ---------------------------------------------------------------------------- live

  function renderAll() {
    renderBanner();
    renderActions();
    renderApprovals();
    renderTimeline();
    renderGraph();
    renderData();
    renderSide();
    if (!state.userSelected) {
      const preferred = preferredJob();
      if (preferred && preferred.id !== state.selectedJob) selectJob(preferred.id, false);
    }
    renderJobPanel();
  }

  const refreshState = SY.coalesce(async () => {
    const data = await SY.get(`/executions/${id}/state/`);
    state.rights = data.approval_rights || {};
    delete data.approval_rights;
    state.exec = data;
    renderAll();
  });

  const catchUp = SY.coalesce(async () => {
    for (let i = 0; i < 50; i++) {
      const data = await SY.get(`/executions/${id}/events/?after=${state.seq}`);
      addEvents(data.events || []);
      if (!data.more) break;
    }
    await refreshState();
    if (output.jobId && !output.loading) {
      await fetchOutput(output.jobId, output.lastSeq);
      updateTerminalStatus();
    }
  });

  function onEvents(message) {
    addEvents(message.events || []);
    if (message.status && message.status !== state.exec.status) {
      state.exec.status = message.status;
      renderBanner();
      renderActions();
    }
    refreshState();
  }

  const tabs = SY.tabs(SY.$("#detail-tabs"), (name) => {
    state.tab = name;
    if (name === "graph" && state.graphDirty) renderGraph();
    if (name === "jobs") placeBars(Date.now());
    if (location.hash !== `#view-${name}`) history.replaceState(null, "", `${location.pathname}${location.search}#view-${name}`);
  });

  // Boot: render, open the job named in the URL (or the most interesting one), subscribe.
  const wanted = new URLSearchParams(location.search).get("job");
  if (wanted && jobById(wanted)) {
    state.userSelected = true;
    state.selectedJob = null;
    renderAll();
    selectJob(wanted, true);
  } else {
    renderAll();
  }
  renderLog();
  const hashTab = location.hash.replace(/^#(view-)?/, "");
  if (["jobs", "graph", "log", "data", "evaluate"].includes(hashTab)) tabs.select(hashTab);

  SY.live.subscribe("execution", id, {
    message: (message) => {
      if (message.type === "execution.events") onEvents(message);
      else if (message.type === "job.output") onOutput(message);
    },
    subscribed: (message) => {
      if (message.seq > state.seq) catchUp(); // events between page render and subscription
    },
    resync: () => catchUp(),
    refused: (message) => SY.toast(`Live updates unavailable: ${message.error}`, "error"),
  });
})();
