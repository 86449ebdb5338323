// hartvault dashboard: renders /api/status (the JSON of `hartvault status --json`)
// and refreshes it every 15 seconds. Plain DOM, no dependencies.
(function () {
  "use strict";
  var REFRESH_MS = 15000;
  var SVG = "http://www.w3.org/2000/svg";
  var W = 1000, H = 100, LEFT = 8, RIGHT = 992;

  function el(tag, attrs) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c == null) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }
  function s(tag, attrs, title) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k === "cls" ? "class" : k, attrs[k]);
    if (title) { var t = document.createElementNS(SVG, "title"); t.textContent = title; e.appendChild(t); }
    return e;
  }
  function ms(iso) { return iso ? Date.parse(iso) : NaN; }
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function fmtTime(iso) {
    var t = ms(iso);
    if (isNaN(t)) return "—";
    var d = new Date(t);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  // fmtShort leaves out the year: tables are read for what happened lately.
  function fmtShort(iso) {
    var t = fmtTime(iso);
    return t.length > 5 ? t.slice(5) : t;
  }
  function fmtDur(sec) {
    if (sec == null || isNaN(sec)) return "—";
    sec = Math.max(0, sec);
    if (sec < 1) return (sec * 1000).toFixed(0) + " ms";
    if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + " s";
    var two = function (a, ua, b, ub) { return a + ua + (b ? " " + b + ub : ""); };
    var m = Math.floor(sec / 60);
    if (m < 60) return two(m, "m", Math.floor(sec % 60), "s");
    var h = Math.floor(m / 60);
    if (h < 48) return two(h, "h", m % 60, "m");
    return two(Math.floor(h / 24), "d", h % 24, "h");
  }
  function fmtBytes(n) {
    if (!n) return "0 B";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }

  function badges(src) {
    var box = el("div", { cls: "badges" });
    (src.alerts || []).forEach(function (a) {
      box.appendChild(el("span", { cls: "badge " + a.kind, title: a.message, "data-alert": a.kind, text: a.kind + " " + a.type }));
    });
    (src.types || []).forEach(function (t) {
      if (t.running) box.appendChild(el("span", { cls: "badge running", text: "running " + t.type, title: "since " + fmtTime(t.running.started) }));
    });
    if (!(src.alerts || []).length) box.appendChild(el("span", { cls: "badge ok", text: "OK" }));
    return box;
  }

  function windowLine(src) {
    var w = src.restorable || {};
    if (!w.latest) return el("div", { cls: "window", text: "Nothing to restore yet." });
    if (w.continuous) {
      return el("div", { cls: "window" }, "Restorable to any instant from ", el("b", { text: fmtTime(w.earliest) }),
        " to ", el("b", { text: fmtTime(w.latest) }), " (" + w.points + " backups + WAL)");
    }
    return el("div", { cls: "window" }, "Restorable to " + w.points + " backup points from ", el("b", { text: fmtTime(w.earliest) }),
      " to ", el("b", { text: fmtTime(w.latest) }));
  }

  // The timeline's span: "fit" (from the earliest thing shown to now, the default)
  // or a fixed span back from now; the same for every source, so they line up.
  var ZOOMS = { fit: 0, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "14d": 14 * 86400e3 };
  var zoom = (location.hash.match(/zoom=([^&]+)/) || [])[1] || "fit";
  if (!(zoom in ZOOMS)) zoom = "fit";
  var lastReport = null;

  function span(rep) {
    var to = ms(rep.generated), from = to - 14 * 86400e3;
    if (ZOOMS[zoom]) return [to - ZOOMS[zoom], to];
    var first = to;
    (rep.sources || []).forEach(function (src) {
      var tl = src.timeline || {};
      (tl.backups || []).forEach(function (b) { first = Math.min(first, ms(b.started)); });
      (tl.failures || []).forEach(function (f) { first = Math.min(first, ms(f.started)); });
      (tl.log || []).forEach(function (l) { first = Math.min(first, ms(l.from)); });
    });
    first = Math.max(first, from);
    var width = Math.max(to - first, 60e3);
    return [to - width * 1.04, to + width * 0.01];
  }

  var STEPS = [1e3, 5e3, 10e3, 30e3, 60e3, 300e3, 600e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3, 7 * 86400e3];
  function tickLabel(t, step) {
    var d = new Date(t);
    if (step >= 86400e3) return pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    if (step >= 3600e3) return (d.getHours() === 0 ? pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " : "") + pad(d.getHours()) + ":00";
    if (step >= 60e3) return pad(d.getHours()) + ":" + pad(d.getMinutes());
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function timeline(src, now, range) {
    var tl = src.timeline || {};
    var from = range[0], to = range[1];
    if (isNaN(from) || isNaN(to) || to <= from) return null;
    var x = function (t) { return LEFT + (Math.min(Math.max(t, from), to) - from) / (to - from) * (RIGHT - LEFT); };
    var inRange = function (a, b) { return b >= from && a <= to; };
    var g = s("svg", { cls: "timeline", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img",
      "aria-label": "timeline of " + src.name });
    g.appendChild(s("line", { cls: "axis", x1: LEFT, x2: RIGHT, y1: 78, y2: 78 }));
    var step = STEPS[STEPS.length - 1];
    for (var i = 0; i < STEPS.length; i++) { if ((to - from) / STEPS[i] <= 10) { step = STEPS[i]; break; } }
    var offset = new Date(from).getTimezoneOffset() * 60e3; // ticks on local boundaries
    for (var t = Math.ceil((from - offset) / step) * step + offset; t < to; t += step) {
      var tick = s("g", { cls: "tick" });
      tick.appendChild(s("line", { x1: x(t), x2: x(t), y1: 14, y2: 80 }));
      if (x(t) < RIGHT - 60) { // no label cut off at the right edge
        var label = s("text", { x: x(t) + 2, y: 10 });
        label.textContent = tickLabel(t, step);
        tick.appendChild(label);
      }
      g.appendChild(tick);
    }
    (tl.log || []).forEach(function (sp) {
      if (!inRange(ms(sp.from), ms(sp.to))) return;
      var a = x(ms(sp.from)), b = x(ms(sp.to));
      g.appendChild(s("rect", { cls: "wal", x: a, y: 16, width: Math.max(1, b - a), height: 60 },
        "WAL coverage " + fmtTime(sp.from) + " → " + fmtTime(sp.to)));
    });
    (tl.backups || []).forEach(function (b) {
      if (!inRange(ms(b.started), ms(b.finished))) return;
      var a = x(ms(b.started)), e = x(ms(b.finished));
      var h = b.type === "full" ? 52 : b.type === "diff" ? 36 : 20;
      g.appendChild(s("rect", { cls: b.type, x: a, y: 76 - h, width: Math.max(2.5, e - a), height: h },
        b.type + " " + b.id + "\n" + fmtTime(b.started) + " → " + fmtTime(b.finished) + "\nread " + fmtBytes(b.bytes) + ", stored " + fmtBytes(b.stored_bytes)));
    });
    (src.types || []).forEach(function (t) {
      if (!t.running) return;
      var a = x(ms(t.running.started));
      g.appendChild(s("rect", { cls: "running", x: a, y: 24, width: Math.max(2.5, x(now) - a), height: 52 },
        t.type + " backup running since " + fmtTime(t.running.started)));
    });
    (tl.failures || []).forEach(function (f) {
      if (!inRange(ms(f.started), ms(f.started))) return;
      var cx = x(ms(f.started)), title = f.type + " " + f.result + " at " + fmtTime(f.started) + (f.error ? "\n" + f.error : "");
      var m = s("g", { cls: "fail" }, title);
      m.appendChild(s("line", { x1: cx - 4, x2: cx + 4, y1: 18, y2: 26 }));
      m.appendChild(s("line", { x1: cx - 4, x2: cx + 4, y1: 26, y2: 18 }));
      g.appendChild(m);
    });
    var w = src.restorable || {};
    if (w.earliest && w.latest && inRange(ms(w.earliest), ms(w.latest))) {
      var wa = x(ms(w.earliest)), wb = x(ms(w.latest));
      g.appendChild(s("line", { cls: "window-line", x1: wa, x2: Math.max(wa + 2, wb), y1: 90, y2: 90 },
        "restorable " + fmtTime(w.earliest) + " → " + fmtTime(w.latest)));
      g.appendChild(s("line", { cls: "window-line", x1: wa, x2: wa, y1: 85, y2: 95 }));
      g.appendChild(s("line", { cls: "window-line", x1: wb, x2: wb, y1: 85, y2: 95 }));
    }
    g.appendChild(s("line", { cls: "now", x1: x(now), x2: x(now), y1: 12, y2: 96 }, "now"));
    return g;
  }

  function zoomBar() {
    var bar = el("div", { cls: "zoom" }, "timeline:");
    Object.keys(ZOOMS).forEach(function (z) {
      var b = el("button", { cls: z === zoom ? "on" : "", type: "button", text: z });
      b.addEventListener("click", function () {
        zoom = z;
        history.replaceState(null, "", z === "fit" ? location.pathname : "#zoom=" + z);
        if (lastReport) render(lastReport);
      });
      bar.appendChild(b);
    });
    return bar;
  }

  function typesTable(src) {
    var head = el("tr", null);
    ["type", "schedule", "last success", "age", "avg duration 7d", "avg read / stored 7d", "backups 7d / all",
      "last attempt", "failures 7d", "stale after", "max duration"].forEach(function (h) { head.appendChild(el("th", { text: h })); });
    var body = el("tbody", null);
    (src.types || []).forEach(function (t) {
      var last = t.last_attempt ? t.last_attempt.result + " " + fmtShort(t.last_attempt.finished || t.last_attempt.started) : "—";
      var row = el("tr", { "data-type": t.type });
      [t.type, t.schedule || "—", fmtShort(t.last_success), t.age_seconds == null ? "—" : fmtDur(t.age_seconds),
        t.last_7d.count ? fmtDur(t.last_7d.duration_seconds) : "—",
        t.last_7d.count ? fmtBytes(t.last_7d.bytes) + " / " + fmtBytes(t.last_7d.stored_bytes) : "—",
        t.last_7d.count + " / " + t.count, last, String(t.failures_7d),
        t.stale_after_seconds ? fmtDur(t.stale_after_seconds) : "—", t.max_duration_seconds ? fmtDur(t.max_duration_seconds) : "—"
      ].forEach(function (v) { row.appendChild(el("td", { text: v })); });
      body.appendChild(row);
      if (t.last_attempt && t.last_attempt.error && t.last_attempt.result !== "ok") {
        var er = el("tr", null);
        er.appendChild(el("td", { cls: "err", colspan: "11", text: t.type + ": " + t.last_attempt.error }));
        body.appendChild(er);
      }
    });
    return el("table", null, el("thead", null, head), body);
  }

  function replicas(src) {
    if (!(src.replicas || []).length) return null;
    var t = el("table", { cls: "replicas" }, el("thead", null, el("tr", null, el("th", { text: "replica" }),
      el("th", { text: "missing backups" }), el("th", { text: "behind since" }), el("th", { text: "last error" }))));
    var b = el("tbody", null);
    src.replicas.forEach(function (r) {
      b.appendChild(el("tr", null, el("td", { text: r.url }), el("td", { text: r.error ? "?" : String(r.missing) }),
        el("td", { text: r.behind_since ? fmtTime(r.behind_since) : "—" }),
        el("td", { cls: r.error || r.last_error ? "err" : "", text: r.error || r.last_error || "—" })));
    });
    t.appendChild(b);
    return t;
  }

  // systemLine: what concerns all sources together: the instants recover --to can
  // reach, and the last restore drill with its measured recovery time.
  function systemLine(sys) {
    var parts = [];
    var c = sys.common_restorable || {};
    if (sys.common_error) parts.push("recover all: " + sys.common_error);
    else if (c.earliest) parts.push("recover all to any instant from " + fmtTime(c.earliest) + (c.latest ? " to " + fmtTime(c.latest) : " on"));
    var d = (sys.drill || {}).last;
    var cls = "system";
    if (d) {
      parts.push("last drill " + fmtTime(d.started) + ": " + (d.passed ? "passed" : "FAILED") + ", recovery time " + fmtDur(d.took / 1e9));
      if (!d.passed) cls += " alerting";
    } else {
      parts.push("no restore drill recorded");
    }
    if ((sys.drill || {}).overdue) { parts.push("drill overdue"); cls += " alerting"; }
    return el("div", { cls: cls, id: "system", text: parts.join(" · ") });
  }

  function render(rep) {
    lastReport = rep;
    var now = ms(rep.generated), range = span(rep);
    var main = document.getElementById("sources");
    main.textContent = "";
    var summary = document.getElementById("summary");
    summary.textContent = "";
    var alerts = rep.alerts || [];
    summary.appendChild(el("span", { cls: "badge " + (alerts.length ? "stale" : "ok"),
      text: alerts.length ? alerts.length + (alerts.length === 1 ? " alert" : " alerts") : "all OK" }));
    summary.appendChild(zoomBar());
    document.getElementById("meta").textContent = rep.repository + " · status at " + fmtTime(rep.generated);
    main.appendChild(systemLine(rep.system || {}));
    if (!(rep.sources || []).length) main.appendChild(el("p", { cls: "empty", text: "The plan has no sources." }));
    (rep.sources || []).forEach(function (src) {
      var card = el("section", { cls: "source " + ((src.alerts || []).length ? "alerting" : "healthy"), "data-source": src.name },
        el("div", { cls: "source-head" }, el("h2", { text: src.name }), el("span", { cls: "kind", text: src.kind }), badges(src)),
        windowLine(src), timeline(src, now, range), el("div", { cls: "table-wrap" }, typesTable(src)), replicas(src));
      if ((src.errors || []).length) card.appendChild(el("div", { cls: "errors", text: src.errors.join("; ") }));
      main.appendChild(card);
    });
    document.title = (alerts.length ? "(" + alerts.length + ") " : "") + "hartvault";
  }

  function refresh() {
    fetch("/api/status", { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(render).catch(function (e) {
      document.getElementById("meta").textContent = "cannot refresh: " + e.message;
    });
  }

  var initial = document.getElementById("initial-status");
  if (initial) {
    try { var data = JSON.parse(initial.textContent); if (data) render(data); } catch (e) { /* refreshed below */ }
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
