// The live stream: one WebSocket per page, reconnecting with backoff.
// Pages listen for "helicone:request" events on document (detail = one logged request).
(function () {
  "use strict";
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = function (n) { return String(n).padStart(2, "0"); };
  // The pages' formatters, also where no live stream runs (a range with a fixed end).
  window.helicone = {
    esc: function (text) {
      return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
        return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
      });
    },
    // As analytics.charts.usd: cents from $0.01 up, two significant digits below ($0.0042).
    usd: function (v) {
      if (v == null) return "–";
      if (v === 0) return "$0";
      if (Math.abs(v) >= 0.01) return "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      const decimals = 1 - Math.floor(Math.log10(Math.abs(v)));
      return (v < 0 ? "-" : "") + "$" + Math.abs(v).toFixed(decimals).replace(/0+$/, "");
    },
    ms: function (v) { return v == null ? "–" : (v >= 1000 ? (v / 1000).toFixed(2) + "s" : Math.round(v) + "ms"); },
    // The one format rows show a time in, the server's too (Django's "M d H:i:s"): "Dec 06 14:05:09", UTC.
    time: function (iso) {
      const d = new Date(iso);
      return MONTHS[d.getUTCMonth()] + " " + pad(d.getUTCDate()) + " " + pad(d.getUTCHours()) + ":" +
        pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    },
    isError: function (r) { return r.status >= 400 || r.status < 200; },
  };

  const root = document.querySelector("[data-live-url]");
  if (!root) return;
  const indicator = document.querySelector(".live-dot");
  let delay = 500;

  function setState(state, text) {
    if (!indicator) return;
    indicator.dataset.state = state;
    indicator.textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + root.dataset.liveUrl);
    socket.onopen = function () { delay = 500; setState("open", "Live"); };
    socket.onmessage = function (message) {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      document.dispatchEvent(new CustomEvent("helicone:" + event.type, { detail: event }));
    };
    socket.onclose = function () {
      setState("closed", "Reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }

  connect();
})();
