// Switchyard UI core: DOM helpers, API calls with the session, time formatting, dialogs,
// toasts, the theme toggle and the live socket shared by every page.
// Everything that shows data builds DOM nodes with textContent: nothing here parses HTML.
"use strict";

(function () {
  const SY = (window.SY = window.SY || {});

  // ------------------------------------------------------------------------------ DOM helpers

  SY.$ = (selector, root) => (root || document).querySelector(selector);
  SY.$$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  // el("a", {href: "/x", class: "y", onclick: fn, dataset: {k: "v"}}, "text", childNode, ...)
  SY.el = function (tag, attrs, ...children) {
    const svg = ["svg", "g", "rect", "path", "text", "line", "circle", "defs", "marker", "title", "tspan", "polyline"].includes(tag);
    const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.setAttribute("class", value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key === "style") throw new Error("inline styles are not allowed (CSP)");
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    SY.append(node, children);
    return node;
  };
  SY.append = function (node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };
  SY.clear = function (node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  };
  SY.replace = function (node, ...children) {
    SY.clear(node);
    return SY.append(node, children);
  };
  SY.boot = function (id) {
    const script = document.getElementById(id);
    return script ? JSON.parse(script.textContent) : null;
  };

  // ------------------------------------------------------------------------------ API

  SY.csrfToken = function () {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  };

  class ApiError extends Error {
    constructor(status, data) {
      super(ApiError.describe(status, data));
      this.status = status;
      this.data = data;
    }
    static describe(status, data) {
      if (data && Array.isArray(data.errors) && data.errors.length) {
        return data.errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join("; ");
      }
      if (data && data.detail) return String(data.detail);
      return `request failed (HTTP ${status})`;
    }
  }
  SY.ApiError = ApiError;

  SY.api = async function (method, url, body) {
    const options = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-Requested-With": "fetch" },
    };
    if (method !== "GET" && method !== "HEAD") {
      options.headers["X-CSRFToken"] = SY.csrfToken();
      options.headers["X-Switchyard-Channel"] = "ui";
    }
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401 || (response.status === 403 && response.redirected)) {
      window.location.assign(`/login/?next=${encodeURIComponent(location.pathname + location.search)}`);
      throw new ApiError(response.status, { detail: "signed out" });
    }
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (response.status !== 204 && type.includes("json")) data = await response.json();
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  };
  SY.get = (url) => SY.api("GET", url);
  SY.post = (url, body) => SY.api("POST", url, body === undefined ? {} : body);

  // ------------------------------------------------------------------------------ formatting

  SY.parseTime = (value) => (value ? new Date(value) : null);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  SY.exactTime = function (value) {
    const d = value instanceof Date ? value : SY.parseTime(value);
    if (!d) return "";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  SY.clockTime = function (value) {
    const d = value instanceof Date ? value : SY.parseTime(value);
    if (!d) return "";
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  };
  SY.relativeTime = function (value, now) {
    const d = value instanceof Date ? value : SY.parseTime(value);
    if (!d) return "—";
    const seconds = Math.round(((now || Date.now()) - d.getTime()) / 1000);
    const future = seconds < 0;
    const s = Math.abs(seconds);
    let text;
    if (s < 5) return "just now";
    if (s < 60) text = `${s}s`;
    else if (s < 3600) text = `${Math.floor(s / 60)}m`;
    else if (s < 86400) text = `${Math.floor(s / 3600)}h`;
    else if (s < 86400 * 30) text = `${Math.floor(s / 86400)}d`;
    else return SY.exactTime(d).slice(0, 10);
    return future ? `in ${text}` : `${text} ago`;
  };
  SY.duration = function (ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "—";
    if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
    const s = ms / 1000;
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${pad(Math.floor(s % 60))}s`;
    const h = Math.floor(m / 60);
    return `${h}h ${pad(m % 60)}m`;
  };
  // A <time> that shows "3m ago" and the exact time on hover; kept fresh by the ticker.
  SY.timeEl = function (value, cls) {
    if (!value) return SY.el("span", { class: "muted" }, "—");
    return SY.el("time", { datetime: value, title: SY.exactTime(value), class: cls || "", dataset: { rel: "1" } }, SY.relativeTime(value));
  };
  // A duration that counts up while `end` is missing (the ticker updates it every second).
  SY.durationEl = function (start, end, ms) {
    if (ms !== null && ms !== undefined && end) return SY.el("span", { class: "nowrap" }, SY.duration(ms));
    if (start && !end) {
      return SY.el("span", { class: "nowrap duration-live", dataset: { since: start } }, SY.duration(Date.now() - new Date(start).getTime()));
    }
    if (start && end) return SY.el("span", { class: "nowrap" }, SY.duration(new Date(end) - new Date(start)));
    return SY.el("span", { class: "muted" }, "—");
  };
  SY.tick = function () {
    const now = Date.now();
    for (const node of SY.$$("time[data-rel]")) node.textContent = SY.relativeTime(node.getAttribute("datetime"), now);
    for (const node of SY.$$("[data-since]")) node.textContent = SY.duration(now - new Date(node.dataset.since).getTime());
    for (const hook of SY.tickHooks) hook(now);
  };
  SY.tickHooks = [];
  setInterval(() => SY.tick(), 1000);

  SY.STATUS_ICONS = {
    completed: "✓", failed: "✗", running: "⚡", pending: "○", dispatched: "◌", cancelled: "⊘",
    timeout: "◔", timed_out: "◔", paused: "‖", waiting: "‖", skipped: "↷", retry: "↻",
    approved: "✓", rejected: "✗", expired: "◔",
  };
  SY.statusLabel = (status) => String(status || "").replace("_", " ");
  SY.badge = function (status, large) {
    return SY.el("span", { class: `badge st-${status}${large ? " badge-lg" : ""}`, dataset: { status } }, SY.statusLabel(status));
  };
  SY.statusIcon = function (status, title) {
    return SY.el("span", { class: `st-icon st-${status}`, title: title || SY.statusLabel(status), "aria-label": title || SY.statusLabel(status), role: "img" }, SY.STATUS_ICONS[status] || "•");
  };
  SY.triggerText = function (trigger) {
    trigger = trigger || {};
    const kind = trigger.kind || "manual";
    let who = trigger.user || trigger.webhook || trigger.event || trigger.schedule || trigger.cron || "";
    if (kind === "parent") who = `${trigger.workflow || "parent"} › ${trigger.node || ""}`;
    if (kind === "rerun" || kind === "replay") who = `${trigger.user || ""}${trigger.from_node ? ` from ${trigger.from_node}` : ""}`;
    if (kind === "manual" && trigger.channel) who = `${trigger.user || "?"} via ${trigger.channel}`;
    if (typeof who === "object") who = JSON.stringify(who);
    return { kind, who: String(who || "") };
  };
  SY.shortId = (id) => String(id || "").slice(0, 8);

  // Pretty JSON as DOM (keys, strings, numbers coloured by class), never as HTML.
  SY.jsonView = function (value) {
    const pre = SY.el("pre", { class: "json-view" });
    const walk = (v, indent) => {
      const pad = "  ".repeat(indent);
      if (v === null) return pre.appendChild(SY.el("span", { class: "json-null" }, "null"));
      if (Array.isArray(v)) {
        if (!v.length) return pre.append("[]");
        pre.append("[\n");
        v.forEach((item, i) => {
          pre.append(pad + "  ");
          walk(item, indent + 1);
          pre.append(i < v.length - 1 ? ",\n" : "\n");
        });
        return pre.append(pad + "]");
      }
      if (typeof v === "object") {
        const keys = Object.keys(v);
        if (!keys.length) return pre.append("{}");
        pre.append("{\n");
        keys.forEach((k, i) => {
          pre.append(pad + "  ");
          pre.appendChild(SY.el("span", { class: "json-key" }, JSON.stringify(k)));
          pre.append(": ");
          walk(v[k], indent + 1);
          pre.append(i < keys.length - 1 ? ",\n" : "\n");
        });
        return pre.append(pad + "}");
      }
      const cls = typeof v === "string" ? "json-string" : typeof v === "number" ? "json-number" : "json-boolean";
      pre.appendChild(SY.el("span", { class: cls }, JSON.stringify(v)));
    };
    walk(value, 0);
    return pre;
  };

  SY.download = function (filename, text, mime) {
    const blob = new Blob([text], { type: mime || "text/plain" });
    const url = URL.createObjectURL(blob);
    const a = SY.el("a", { href: url, download: filename });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  };

  SY.debounce = function (fn, ms) {
    let timer = null;
    return function (...args) {
      clearTimeout(timer);
      timer = setTimeout(() => fn.apply(this, args), ms);
    };
  };

  // Run `fn` now, and if asked again while it runs, once more afterwards (never in parallel).
  SY.coalesce = function (fn) {
    let running = false;
    let again = false;
    const run = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          await fn();
        } while (again);
      } catch (error) {
        SY.toast(error.message || String(error), "error");
      } finally {
        running = false;
      }
    };
    return run;
  };

  // ------------------------------------------------------------------------------ toasts, dialogs

  SY.toast = function (message, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const toast = SY.el("div", { class: `toast${kind ? ` toast-${kind}` : ""}`, role: kind === "error" ? "alert" : "status" }, message);
    box.appendChild(toast);
    setTimeout(() => toast.remove(), kind === "error" ? 8000 : 4000);
  };

  // confirm({title, text, ok, danger, input: {label, value}}) -> Promise<false | true | string>
  SY.confirm = function (options) {
    const dialog = document.getElementById("confirm-dialog");
    SY.$("#confirm-title").textContent = options.title || "Are you sure?";
    SY.replace(SY.$("#confirm-text"), options.text || "");
    const ok = SY.$("#confirm-ok");
    ok.textContent = options.ok || "Confirm";
    ok.className = `button ${options.danger ? "button-danger-solid" : "button-primary"}`;
    const field = SY.$("#confirm-input-field");
    const input = SY.$("#confirm-input");
    field.hidden = !options.input;
    if (options.input) {
      SY.$("#confirm-input-label").textContent = options.input.label || "Value";
      input.value = options.input.value || "";
      input.required = options.input.required !== false;
    } else {
      input.required = false;
    }
    return new Promise((resolve) => {
      const done = () => {
        dialog.removeEventListener("close", done);
        if (dialog.returnValue !== "ok") return resolve(false);
        resolve(options.input ? input.value.trim() : true);
      };
      dialog.returnValue = "";
      dialog.addEventListener("close", done);
      dialog.showModal();
      (options.input ? input : SY.$("#confirm-cancel")).focus();
    });
  };

  // ------------------------------------------------------------------------------ tabs

  // Buttons [role=tab][aria-controls] inside `container` switch the panels they control.
  SY.tabs = function (container, onChange) {
    const tabs = SY.$$("[role=tab]", container);
    const select = (tab, focus) => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", selected ? "true" : "false");
        other.tabIndex = selected ? 0 : -1;
        const panel = document.getElementById(other.getAttribute("aria-controls"));
        if (panel) panel.hidden = !selected;
      }
      if (focus) tab.focus();
      if (onChange) onChange(tab.dataset.tab || tab.getAttribute("aria-controls"));
    };
    tabs.forEach((tab, index) => {
      tab.addEventListener("click", () => select(tab));
      tab.addEventListener("keydown", (event) => {
        const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
        if (step) select(tabs[(index + step + tabs.length) % tabs.length], true);
      });
    });
    return { select: (name) => { const tab = tabs.find((t) => (t.dataset.tab || t.getAttribute("aria-controls")) === name); if (tab) select(tab); } };
  };

  // ------------------------------------------------------------------------------ theme

  SY.toggleTheme = function () {
    const root = document.documentElement;
    const current = root.getAttribute("data-theme") || (window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    const next = current === "dark" ? "light" : "dark";
    root.setAttribute("data-theme", next);
    try {
      localStorage.setItem("sy-theme", next);
    } catch (e) {
      /* not persisted */
    }
    document.dispatchEvent(new CustomEvent("sy:theme", { detail: next }));
  };

  // ------------------------------------------------------------------------------ live socket

  // One WebSocket per page. Pages register subscriptions with handlers; the socket subscribes
  // them on every (re)connect, reports its state in the top bar, retries with exponential
  // backoff (1 s .. 30 s, with jitter), and calls each subscription's `resync` after a
  // reconnect so the page fetches what it missed (no polling while the socket is open).
  class LiveSocket {
    constructor() {
      this.subs = new Map();
      this.ws = null;
      this.attempt = 0;
      this.connectedOnce = false;
      this.retryTimer = null;
      this.countdownTimer = null;
      this.state = "idle";
    }
    key(topic, id) {
      return id ? `${topic}:${id}` : topic;
    }
    // Several parts of a page may follow the same topic: each gets every message.
    subscribe(topic, id, handlers) {
      const key = this.key(topic, id);
      let sub = this.subs.get(key);
      const fresh = !sub;
      if (fresh) {
        sub = { topic, id: id || null, listeners: [], seq: 0 };
        this.subs.set(key, sub);
      }
      sub.listeners.push(handlers || {});
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        if (fresh) this.sendSubscribe(sub);
      } else {
        this.connect();
      }
      return sub;
    }
    notify(sub, name, ...args) {
      for (const handlers of sub.listeners) {
        if (!handlers[name]) continue;
        try {
          const result = handlers[name](...args, sub);
          if (result && result.catch) result.catch((error) => SY.toast(error.message || String(error), "error"));
        } catch (error) {
          console.error(error);
        }
      }
    }
    unsubscribe(topic, id) {
      this.subs.delete(this.key(topic, id));
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ unsubscribe: topic, id: id || undefined }));
    }
    sendSubscribe(sub) {
      const message = { subscribe: sub.topic };
      if (sub.id) message.id = sub.id;
      this.ws.send(JSON.stringify(message));
    }
    url() {
      return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/live/`;
    }
    connect() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        // Already connected (a retry raced the socket's recovery): say so instead of retrying.
        clearTimeout(this.retryTimer);
        this.attempt = 0;
        this.setState("open");
        return;
      }
      if (this.ws && this.ws.readyState === WebSocket.CONNECTING) return;
      clearTimeout(this.retryTimer);
      this.setState("connecting");
      let ws;
      try {
        ws = new WebSocket(this.url());
      } catch (error) {
        this.scheduleRetry();
        return;
      }
      this.ws = ws;
      ws.addEventListener("open", () => {
        const reconnected = this.connectedOnce;
        this.connectedOnce = true;
        this.attempt = 0;
        this.setState("open");
        for (const sub of this.subs.values()) {
          this.sendSubscribe(sub);
          if (reconnected) this.notify(sub, "resync");
        }
      });
      ws.addEventListener("message", (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (e) {
          return;
        }
        this.dispatch(message);
      });
      ws.addEventListener("close", (event) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (event.code === 4401) {
          this.setState("closed", "Signed out");
          return;
        }
        this.scheduleRetry();
      });
      ws.addEventListener("error", () => {
        /* `close` follows and schedules the retry */
      });
    }
    scheduleRetry() {
      this.attempt += 1;
      const base = Math.min(30000, 1000 * 2 ** Math.min(this.attempt - 1, 5));
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      const until = Date.now() + delay;
      this.setState("retrying", until);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }
    retryNow() {
      clearTimeout(this.retryTimer);
      this.connect();
    }
    dispatch(message) {
      const type = message.type;
      if (type === "subscribed" || type === "error" || type === "unsubscribed") {
        const sub = this.subs.get(this.key(message.topic, message.id));
        if (sub && type === "subscribed") this.notify(sub, "subscribed", message);
        if (type === "error") {
          if (sub && sub.listeners.some((h) => h.refused)) this.notify(sub, "refused", message);
          else SY.toast(`Live updates refused: ${message.error}`, "error");
        }
        return;
      }
      let key = null;
      if (type === "execution.changed") key = "executions";
      else if (type === "execution.events" || type === "job.output") key = this.key("execution", message.execution_id);
      else if (type === "approvals.changed") key = "approvals";
      else if (type === "agents.changed") key = "agents";
      const sub = key && this.subs.get(key);
      if (!sub) return;
      if (typeof message.seq === "number" && message.seq > sub.seq) sub.seq = message.seq;
      this.notify(sub, "message", message);
    }
    setState(state, extra) {
      this.state = state;
      document.documentElement.dataset.live = state;
      const indicator = document.getElementById("live-indicator");
      const banner = this.banner();
      clearInterval(this.countdownTimer);
      if (!indicator) return;
      indicator.dataset.state = state;
      const text = SY.$(".live-text", indicator);
      if (state === "open") {
        text.textContent = "Live";
        indicator.title = "Live updates connected";
        banner.hidden = true;
      } else if (state === "connecting") {
        text.textContent = "Connecting…";
        indicator.title = "Connecting to live updates";
      } else if (state === "retrying") {
        const render = () => {
          const seconds = Math.max(0, Math.ceil((extra - Date.now()) / 1000));
          text.textContent = `Reconnecting in ${seconds}s`;
          SY.replace(banner, `Live updates are disconnected; what you see may be out of date. Reconnecting in ${seconds}s… `,
            SY.el("button", { type: "button", class: "link-button", onclick: () => this.retryNow() }, "Retry now"));
        };
        render();
        banner.hidden = false;
        this.countdownTimer = setInterval(render, 1000);
      } else if (state === "closed") {
        text.textContent = extra || "Offline";
        SY.replace(banner, `Live updates stopped: ${extra || "offline"}. `, SY.el("a", { href: "/login/" }, "Sign in again"));
        banner.hidden = false;
      }
    }
    banner() {
      let banner = document.getElementById("offline-banner");
      if (!banner) {
        banner = SY.el("div", { id: "offline-banner", class: "offline-banner", role: "status", hidden: true });
        const main = document.getElementById("main");
        if (main) main.parentNode.insertBefore(banner, main);
      }
      return banner;
    }
  }
  SY.live = new LiveSocket();

  // ------------------------------------------------------------------------------ page shell

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of SY.$$("#theme-toggle, #theme-toggle-settings")) button.addEventListener("click", SY.toggleTheme);
    const counter = document.getElementById("nav-approvals-count");
    if (counter && document.body.dataset.page !== "login") {
      const refresh = SY.coalesce(async () => {
        const data = await SY.get("/api/v1/approvals/?status=pending&page_size=100");
        const n = (data.results || []).length;
        counter.hidden = n === 0;
        counter.textContent = n >= 100 ? "99+" : String(n);
        counter.setAttribute("aria-label", `${n} pending`);
      });
      SY.live.subscribe("approvals", null, { message: () => refresh(), resync: () => refresh() });
      refresh();
    }
  });
})();
