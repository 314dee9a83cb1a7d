// Approvals: pending requests (live via the `approvals` group) with approve/reject, and the
// most recent decisions.
"use strict";

(function () {
  const SY = window.SY;
  let data = SY.boot("boot");

  function card(approval) {
    const refusal = data.rights[String(approval.id)];
    const note = SY.el("textarea", { placeholder: "Note (optional)", "aria-label": `Note for ${approval.workflow} ${approval.node_id}` });
    const decide = async (approve) => {
      try {
        await SY.post(`/api/v1/approvals/${approval.id}/${approve ? "approve" : "reject"}/`, { note: note.value });
        SY.toast(`${approve ? "Approved" : "Rejected"}: ${approval.workflow} › ${approval.node_id}`, approve ? "success" : undefined);
        refresh();
      } catch (error) {
        SY.toast(error.message, "error");
      }
    };
    const approvers = approval.approvers || {};
    const who = [...(approvers.users || []).map((u) => `@${u}`), ...(approvers.groups || []).map((g) => `group ${g}`)].join(", ");
    return SY.el("div", { class: "approval-card", dataset: { approval: String(approval.id) } },
      SY.el("h2", {}, SY.el("span", { "aria-hidden": "true" }, "‖"),
        SY.el("a", { href: `/executions/${approval.execution}/` }, approval.workflow), SY.el("span", { class: "muted" }, " › "), approval.node_id),
      approval.message ? SY.el("div", { class: "message" }, approval.message) : null,
      SY.el("div", { class: "meta" }, "Requested ", SY.timeEl(approval.created_at), ` · approvers: ${who || "anyone with approvals.respond"} · quorum ${approval.quorum}`,
        (approval.votes || []).length ? ` · ${(approval.votes || []).length} vote(s)` : "",
        approval.expires_at ? SY.el("span", {}, " · expires ", SY.timeEl(approval.expires_at)) : null),
      refusal ? SY.el("div", { class: "refusal" }, `You cannot decide this request: ${refusal}.`) : null,
      note,
      SY.el("div", { class: "row" },
        SY.el("button", { type: "button", class: "button button-approve", disabled: !!refusal, onclick: () => decide(true) }, "Approve"),
        SY.el("button", { type: "button", class: "button button-danger", disabled: !!refusal, onclick: () => decide(false) }, "Reject"),
        SY.el("a", { class: "button button-ghost", href: `/executions/${approval.execution}/` }, "Open run")));
  }

  function render() {
    const list = SY.$("#pending-list");
    SY.clear(list);
    const wrap = SY.el("div", { class: "card-pad stack" });
    for (const approval of data.pending) wrap.appendChild(card(approval));
    if (data.pending.length) list.appendChild(wrap);
    SY.$("#pending-empty").hidden = data.pending.length > 0;
    SY.$("#pending-count").textContent = data.pending.length ? `(${data.pending.length})` : "";
    const body = SY.$("#recent-body");
    SY.clear(body);
    for (const a of data.recent) {
      body.appendChild(SY.el("tr", {},
        SY.el("td", {}, SY.badge(a.status)),
        SY.el("td", {}, SY.el("a", { class: "row-link", href: `/executions/${a.execution}/` }, a.workflow)),
        SY.el("td", {}, SY.el("code", {}, a.node_id)),
        SY.el("td", {}, a.decided_by || SY.el("span", { class: "muted" }, a.decided_via || "—")),
        SY.el("td", {}, SY.timeEl(a.decided_at || a.created_at)),
        SY.el("td", { class: "hide-sm small" }, a.note || "")));
    }
    if (!data.recent.length) body.appendChild(SY.el("tr", {}, SY.el("td", { colspan: 6, class: "muted" }, "No decisions yet.")));
  }

  const refresh = SY.coalesce(async () => {
    data = await SY.get("/approvals/pending.json");
    render();
  });

  render();
  // `subscribed` closes the gap between rendering the page and joining the group.
  SY.live.subscribe("approvals", null, { message: () => refresh(), resync: () => refresh(), subscribed: () => refresh() });
})();
