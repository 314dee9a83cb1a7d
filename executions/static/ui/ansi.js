// Job output as a terminal: ANSI SGR colours become whitelisted CSS classes (ansi-fg-31,
// ansi-bold, ...), every other escape sequence is dropped, and all text reaches the page as
// text nodes (never as HTML), so output like "<script>" is shown, not run.
"use strict";

(function () {
  const SY = (window.SY = window.SY || {});
  const ESC = "\u001b";
  const MAX_LINES = 20000;
  // A line longer than MAX_LINE_CHARS + LINE_TAIL_CHARS (minified JSON, a progress bar without
  // newlines) shows its start, how much is not shown and its end (where the agent marks a
  // truncated stream): laying out megabytes of one line would stall the page.
  const MAX_LINE_CHARS = 10000;
  const LINE_TAIL_CHARS = 1000;
  const MAX_PENDING = 4096;

  function freshStyle() {
    return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
  }

  // Apply one SGR parameter list ("1;31", "38;5;9", "") to a style.
  function applySgr(style, params) {
    const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : parseInt(p, 10)));
    for (let i = 0; i < codes.length; i++) {
      const code = codes[i];
      if (isNaN(code)) continue;
      if (code === 0) Object.assign(style, freshStyle());
      else if (code === 1) style.bold = true;
      else if (code === 2) style.dim = true;
      else if (code === 3) style.italic = true;
      else if (code === 4) style.underline = true;
      else if (code === 22) style.bold = style.dim = false;
      else if (code === 23) style.italic = false;
      else if (code === 24) style.underline = false;
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) style.fg = code;
      else if (code === 39) style.fg = null;
      else if ((code >= 40 && code <= 47) || (code >= 100 && code <= 107)) style.bg = code;
      else if (code === 49) style.bg = null;
      else if (code === 38 || code === 48) {
        // 256 colours: the 16 basic ones map to classes, the rest are dropped; truecolour dropped.
        const mode = codes[i + 1];
        if (mode === 5) {
          const n = codes[i + 2];
          let mapped = null;
          if (n >= 0 && n < 8) mapped = (code === 38 ? 30 : 40) + n;
          else if (n >= 8 && n < 16) mapped = (code === 38 ? 90 : 100) + n - 8;
          if (code === 38) style.fg = mapped;
          else style.bg = mapped;
          i += 2;
        } else if (mode === 2) {
          i += 4;
        } else {
          i += 1;
        }
      }
    }
  }

  function classesOf(style) {
    const classes = [];
    if (style.fg) classes.push(`ansi-fg-${style.fg}`);
    if (style.bg) classes.push(`ansi-bg-${style.bg}`);
    if (style.bold) classes.push("ansi-bold");
    if (style.dim) classes.push("ansi-dim");
    if (style.italic) classes.push("ansi-italic");
    if (style.underline) classes.push("ansi-underline");
    return classes.join(" ");
  }

  // Split raw text into [{text, cls}] pieces and "\n" markers; `state` carries the style and an
  // unfinished escape sequence from one chunk to the next.
  function tokenize(state, raw) {
    const text = state.pending + raw;
    state.pending = "";
    const out = [];
    let plain = "";
    const flush = () => {
      if (plain) out.push({ text: plain, cls: classesOf(state.style) });
      plain = "";
    };
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === ESC) {
        flush();
        if (i + 1 >= text.length) {
          state.pending = text.slice(i);
          break;
        }
        const next = text[i + 1];
        if (next === "[") {
          // CSI: parameter bytes 0x30-0x3F, intermediate 0x20-0x2F, final 0x40-0x7E.
          let j = i + 2;
          while (j < text.length && text.charCodeAt(j) >= 0x20 && text.charCodeAt(j) <= 0x3f) j++;
          if (j >= text.length) {
            state.pending = text.slice(i).slice(0, MAX_PENDING);
            break;
          }
          const final = text[j];
          const code = text.charCodeAt(j);
          if (code >= 0x40 && code <= 0x7e) {
            if (final === "m" && /^[0-9;:]*$/.test(text.slice(i + 2, j))) applySgr(state.style, text.slice(i + 2, j));
            i = j + 1;
          } else {
            i = j; // malformed: drop the introducer, keep going
          }
          continue;
        }
        if (next === "]" || next === "P" || next === "_" || next === "^" || next === "X") {
          // OSC / DCS / APC / PM / SOS: up to BEL or ST (ESC \); dropped whole.
          let j = i + 2;
          let end = -1;
          while (j < text.length) {
            if (text[j] === "\u0007") { end = j + 1; break; }
            if (text[j] === ESC && text[j + 1] === "\\") { end = j + 2; break; }
            if (text[j] === ESC && j + 1 >= text.length) break;
            j++;
          }
          if (end < 0) {
            if (text.length - i < MAX_PENDING) state.pending = text.slice(i);
            break;
          }
          i = end;
          continue;
        }
        if (next === "(" || next === ")" || next === "*" || next === "+" || next === "#" || next === "%") {
          i += 3; // charset designation: ESC ( B
          continue;
        }
        i += 2; // any other two-byte escape
        continue;
      }
      if (ch === "\n") {
        flush();
        out.push("\n");
        i++;
        continue;
      }
      if (ch === "\r") {
        if (i + 1 >= text.length) {
          flush();
          state.pending = "\r";
          break;
        }
        if (text[i + 1] !== "\n") {
          flush();
          out.push("\r"); // carriage return: the line starts over (progress bars)
        }
        i++;
        continue;
      }
      const code = ch.charCodeAt(0);
      if ((code < 0x20 && ch !== "\t") || code === 0x7f || (code >= 0x80 && code < 0xa0)) {
        i++; // other control characters are dropped
        continue;
      }
      plain += ch;
      i++;
    }
    flush();
    return out;
  }

  // A terminal view: lines of spans in `container`, one style state per stream.
  class Terminal {
    constructor(container, options) {
      this.container = container;
      this.options = options || {};
      this.reset();
    }
    reset() {
      SY.clear(this.container);
      this.states = { stdout: { style: freshStyle(), pending: "" }, stderr: { style: freshStyle(), pending: "" } };
      this.line = null;
      this.lineStream = null;
      this.lineCount = 0;
      this.trimmed = 0;
      this.query = "";
      this.onlyMatches = false;
      this.seen = new Set();
      this.placeholder = null;
    }
    showPlaceholder(text) {
      if (this.lineCount) return;
      if (!this.placeholder) {
        this.placeholder = SY.el("div", { class: "placeholder" });
        this.container.appendChild(this.placeholder);
      }
      this.placeholder.textContent = text;
    }
    newLine(stream) {
      if (this.placeholder) {
        this.placeholder.remove();
        this.placeholder = null;
      }
      this.lineCount += 1;
      this.line = SY.el("div", { class: `line ${stream}`, dataset: { n: String(this.lineCount) } });
      this.lineStream = stream;
      this.startLine();
      this.container.appendChild(this.line);
      if (this.container.childElementCount > MAX_LINES) {
        this.container.firstElementChild.remove();
        this.trimmed += 1;
      }
      return this.line;
    }
    startLine() {
      this.lineChars = 0;
      this.lineCut = 0;
      this.tail = null;
      this.cutNote = null;
    }
    // Append a piece to the current line: its first MAX_LINE_CHARS as they come, then a rolling
    // tail of the last LINE_TAIL_CHARS (plain text). What falls between is counted in a note
    // whose text comes from CSS (`data-cut`), so it is not part of the line for search/copy.
    append(piece) {
      const room = Math.max(MAX_LINE_CHARS - this.lineChars, 0);
      const head = piece.text.length > room ? piece.text.slice(0, room) : piece.text;
      if (head) {
        this.line.appendChild(piece.cls ? SY.el("span", { class: piece.cls }, head) : document.createTextNode(head));
        this.lineChars += head.length;
      }
      if (head.length === piece.text.length) return;
      if (!this.tail) this.tail = this.line.appendChild(document.createTextNode(""));
      const tail = this.tail.data + piece.text.slice(head.length);
      if (tail.length <= LINE_TAIL_CHARS) {
        this.tail.data = tail;
        return;
      }
      this.tail.data = tail.slice(-LINE_TAIL_CHARS);
      this.lineCut += tail.length - LINE_TAIL_CHARS;
      if (!this.cutNote) this.cutNote = this.line.insertBefore(SY.el("span", { class: "cut-note" }), this.tail);
      this.cutNote.dataset.cut = `… ${this.lineCut} characters not shown (Download has everything) …`;
    }
    // Append a chunk; chunks with a `seq` already written are ignored (live + fetched overlap).
    write(stream, text, seq) {
      if (seq !== undefined && seq !== null) {
        if (this.seen.has(seq)) return false;
        this.seen.add(seq);
      }
      stream = stream === "stderr" ? "stderr" : "stdout";
      const pieces = tokenize(this.states[stream], text);
      const touched = new Set();
      for (const piece of pieces) {
        if (piece === "\n") {
          if (!this.line || this.lineStream !== stream) this.newLine(stream);
          touched.add(this.line);
          this.line = null;
          continue;
        }
        if (piece === "\r") {
          if (this.line && this.lineStream === stream) {
            SY.clear(this.line);
            this.startLine();
          }
          continue;
        }
        if (!this.line || this.lineStream !== stream) this.newLine(stream);
        this.append(piece);
        touched.add(this.line);
      }
      if (this.query) for (const line of touched) this.mark(line);
      return true;
    }
    text() {
      return SY.$$(".line", this.container).map((line) => line.textContent).join("\n");
    }
    mark(line) {
      const hit = !!this.query && line.textContent.toLowerCase().includes(this.query);
      line.classList.toggle("hit", hit);
      line.classList.toggle("filtered-out", this.onlyMatches && !!this.query && !hit);
      return hit;
    }
    search(query, onlyMatches) {
      this.query = (query || "").toLowerCase();
      this.onlyMatches = !!onlyMatches;
      let hits = 0;
      let first = null;
      for (const line of SY.$$(".line", this.container)) {
        if (this.mark(line)) {
          hits += 1;
          first = first || line;
        }
      }
      if (first && !this.onlyMatches) first.scrollIntoView({ block: "center" });
      return hits;
    }
  }

  SY.Terminal = Terminal;
  SY.ansiTokenize = (text) => tokenize({ style: freshStyle(), pending: "" }, text);
})();
