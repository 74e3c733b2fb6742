// The pages' charts, drawn with uPlot (npm, installed by `make`, served from /static/vendor/uplot/).
// Each <div data-chart="ID"> holds the server's SVG (what shows with JavaScript off) and names the
// json_script ID with its spec (analytics.charts.figure). Drawn here:
// - a hover crosshair, the bucket's time and every series' value in the legend;
// - a click on a column or point opens the explorer at that bucket (from/to) and series;
// - a drag across the plot reloads the page with that time range as from/to (zoom).
// Times are UTC, as every time the pages show.
(function () {
  "use strict";
  const uPlot = window.uPlot;
  if (!uPlot || !window.helicone) return;  // uPlot, and live.js before this file

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = (n) => String(n).padStart(2, "0");

  // As analytics.charts.number / usd / ms / percent.
  const FORMATS = {
    number: function (v) {
      if (v == null) return "–";
      const a = Math.abs(v);
      if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
      if (a >= 1e4) return Math.round(v / 1000) + "k";
      if (a >= 1000) return (v / 1000).toFixed(1) + "k";
      if (Number.isInteger(v)) return String(v);
      return a >= 1 ? v.toFixed(2) : String(Number(v.toPrecision(3)));
    },
    usd: window.helicone.usd,  // live.js: the formats the rows use
    ms: window.helicone.ms,
    percent: function (v) { return v == null ? "–" : (v >= 1 || v === 0 ? Math.round(v) + "%" : v.toFixed(1) + "%"); },
  };

  // "Dec 06 14:00 UTC": the rows' format (Django's "M d H:i"), in UTC.
  function when(ts) {
    const d = new Date(ts * 1000);
    return MONTHS[d.getUTCMonth()] + " " + pad(d.getUTCDate()) + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }
  // The time axis in the same UTC format: "14:00" ticks, the day ("Dec 06") under the first tick of
  // each day; days alone when the ticks are days apart.
  function timeTicks(u, splits, axisIdx, space, incr) {
    let previous = null;
    return splits.map(function (ts) {
      const d = new Date(ts * 1000), day = MONTHS[d.getUTCMonth()] + " " + pad(d.getUTCDate());
      if (incr >= 86400) return day;
      const label = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + (day !== previous ? "\n" + day : "");
      previous = day;
      return label;
    });
  }
  // What from/to carry: ISO 8601 in UTC, to the second.
  function iso(ts) { return new Date(Math.round(ts) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"); }

  // Counts have whole-number ticks.
  const COUNT_INCRS = [];
  for (let e = 0; e <= 12; e++) [1, 2, 2.5, 5].forEach(function (m) { if (!(e === 0 && m === 2.5)) COUNT_INCRS.push(m * Math.pow(10, e)); });

  // A y axis as wide as its longest label (none clipped).
  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce(function (acc, v) { return v && v.length > acc.length ? v : acc; }, "");
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    return Math.ceil(size) + 4;
  }

  // Points drawn where a line cannot be: a bucket with no neighbour (one bucket of data draws).
  function isolated(u, sidx, show) {
    if (show) return null;
    const values = u.data[sidx], found = [];
    for (let i = 0; i < values.length; i++) {
      if (values[i] != null && values[i - 1] == null && values[i + 1] == null) found.push(i);
    }
    return found.length ? found : null;
  }

  function build(box, spec) {
    const format = FORMATS[spec.format] || FORMATS.number;
    const times = spec.times, step = spec.step || 3600, n = spec.series.length;
    const columns = spec.kind === "columns";
    const raw = spec.series.map(function (s) { return s.values; });
    // Stacked columns: cumulative sums, the top of the stack drawn first so each lower one covers its share.
    let drawn = raw;
    if (columns) {
      let acc = times.map(function () { return 0; });
      drawn = raw.map(function (values) {
        acc = acc.map(function (a, i) { return a + (values[i] || 0); });
        return acc;
      });
    }
    const order = raw.map(function (_, i) { return columns ? n - 1 - i : i; });
    const series = [{ value: function (u, ts) { return ts == null ? "–" : when(ts); } }];
    order.forEach(function (i) {
      const s = spec.series[i];
      series.push({
        label: s.label,
        stroke: s.color,
        width: columns ? 0 : 2,
        fill: columns ? s.color : (spec.area ? s.color + "22" : undefined),
        paths: columns ? uPlot.paths.bars({ size: [0.72, 64], align: 0 }) : undefined,
        points: columns ? { show: false } : { size: 7, fill: s.color, filter: isolated },
        spanGaps: false,
        value: function (u, v, sidx, idx) { return idx == null ? "–" : format(raw[i][idx]); },
      });
    });
    const first = times.length ? times[0] : Date.now() / 1000 - step, last = times.length ? times[times.length - 1] : first;
    const width = Math.max(box.clientWidth, 200);
    const opts = {
      width: width,
      height: width < 480 ? 180 : 200,
      padding: [10, 18, 0, 0],
      series: series,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: {
        x: { time: true, range: function () { return [first - step / 2, last + step / 2]; } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; } },
      },
      axes: [
        { stroke: "#98a2b3", grid: { stroke: "#eef0f4", width: 1 }, ticks: { show: false }, values: timeTicks, space: 56 },
        {
          stroke: "#98a2b3", grid: { stroke: "#eef0f4", width: 1 }, ticks: { show: false }, size: axisSize,
          incrs: spec.format === "number" ? COUNT_INCRS : undefined,
          values: function (u, splits) { return splits.map(function (v) { return format(v); }); },
        },
      ],
      cursor: {
        drag: { x: !!spec.zoom, y: false, setScale: false },
        points: { show: !columns },
      },
      legend: { live: true },
      hooks: {
        setSelect: [function (u) {
          if (!spec.zoom || u.select.width < 4) return;
          const from = u.posToVal(u.select.left, "x"), to = u.posToVal(u.select.left + u.select.width, "x");
          const url = new URL(location.href);
          ["range", "from", "to", "page"].forEach(function (name) { url.searchParams.delete(name); });
          url.searchParams.set("from", iso(Math.max(from, first)));
          url.searchParams.set("to", iso(Math.min(to, last + step)));
          location.assign(url.toString());
        }],
      },
    };
    const data = [times].concat(order.map(function (i) { return drawn[i]; }));
    const chart = new uPlot(opts, data, box);
    chart.root.setAttribute("aria-label", spec.label || "");
    if (columns && n > 1) {  // the legend in the stack's own order (bottom first), not the drawing order
      const rows = Array.from(chart.root.querySelectorAll(".u-legend .u-series")).slice(1);
      rows.reverse().forEach(function (row) { row.parentNode.appendChild(row); });
    }
    if (spec.explore) {
      chart.over.classList.add("chart-clickable");
      let downX = null;
      chart.over.addEventListener("mousedown", function (e) { downX = e.clientX; });
      chart.over.addEventListener("click", function (e) {
        if (downX != null && Math.abs(e.clientX - downX) > 3) return;  // the end of a drag, not a click
        const idx = chart.cursor.idx;
        if (idx == null || idx < 0 || idx >= times.length) return;
        location.assign(exploreUrl(spec, idx, whichSeries(chart, spec, drawn, idx, columns)));
      });
    }
    return chart;
  }

  // The series under the pointer: in a stack, the segment the pointer is in; above every
  // segment of a stack of several, none (the whole bucket).
  function whichSeries(chart, spec, drawn, idx, columns) {
    if (spec.series.length === 1 || !columns) return 0;
    const y = chart.posToVal(chart.cursor.top, "y");
    for (let k = 0; k < drawn.length; k++) {
      const below = k ? drawn[k - 1][idx] : 0;
      if (drawn[k][idx] > below && y <= drawn[k][idx]) return k;
    }
    return -1;
  }

  function exploreUrl(spec, idx, seriesIdx) {
    const params = new URLSearchParams();
    params.set("from", iso(spec.times[idx]));
    params.set("to", iso(spec.times[idx] + spec.step));
    const extra = seriesIdx >= 0 ? spec.series[seriesIdx].params || {} : {};
    Object.keys(extra).forEach(function (name) { params.set(name, extra[name]); });
    return spec.explore + "?" + params.toString();
  }

  const charts = {};
  const specs = {};

  function draw(id, spec) {
    const box = document.querySelector('[data-chart="' + id + '"]');
    if (!box) return;
    if (charts[id]) charts[id].destroy();
    // The JavaScript-off picture and its legend: uPlot draws its own.
    box.querySelectorAll("svg.chart, .legend").forEach(function (el) { el.remove(); });
    specs[id] = spec;
    charts[id] = build(box, spec);
    resized.observe(box);
  }

  function drawAll() {
    document.querySelectorAll("[data-chart]").forEach(function (box) {
      const script = document.getElementById(box.dataset.chart);
      if (script) draw(box.dataset.chart, JSON.parse(script.textContent));
    });
  }

  // A chart follows its card's width (a resized window, a page whose layout settles after the script).
  const resized = new ResizeObserver(function (entries) {
    entries.forEach(function (entry) {
      const chart = charts[entry.target.dataset.chart];
      const width = Math.max(Math.floor(entry.contentRect.width), 200);
      // Next frame: resizing inside the observer's callback would notify it again in this one.
      if (chart && chart.width !== width) {
        requestAnimationFrame(function () { chart.setSize({ width: width, height: width < 480 ? 180 : 200 }); });
      }
    });
  });

  // For the live dashboard (redraw with a fresh spec) and the browser tests (read what is drawn).
  window.heliconeCharts = { draw: draw, specs: specs, charts: charts, exploreUrl: exploreUrl };
  drawAll();
})();
