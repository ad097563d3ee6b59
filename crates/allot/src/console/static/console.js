// allot console: the usage chart (uPlot) and the audit page's live feed (Server-Sent Events).
// Loaded as a file (the Content-Security-Policy allows no inline script); everything else is
// plain HTML forms and links, with htmx for the tables that refresh themselves.
"use strict";

(function () {
  function drawUsageChart() {
    var el = document.getElementById("usage-chart");
    if (!el || typeof window.uPlot !== "function") return;
    var data = JSON.parse(el.getAttribute("data-usage"));
    var columns = [data.at, data.in_use_max, data.in_use_avg, data.total, data.denied];
    var opts = {
      width: Math.max(280, el.clientWidth || 600),
      height: 260,
      scales: { x: { time: true }, seats: { auto: true, range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      axes: [{}, { scale: "seats", label: "seats" }],
      series: [
        {},
        { label: "peak in use", scale: "seats", stroke: "#1d4ed8", width: 2, fill: "rgba(29, 78, 216, 0.08)" },
        { label: "mean in use", scale: "seats", stroke: "#0891b2", width: 1 },
        { label: "total", scale: "seats", stroke: "#6b7280", width: 1, dash: [6, 4] },
        { label: "refused", scale: "seats", stroke: "#b91c1c", width: 1 }
      ]
    };
    var chart = new window.uPlot(opts, columns, el);
    // Tests and people alike can see how many points the chart drew.
    el.setAttribute("data-drawn", String(data.at.length));
    window.addEventListener("resize", function () {
      chart.setSize({ width: Math.max(280, el.clientWidth || 600), height: 260 });
    });
  }

  function followAudit() {
    var rows = document.getElementById("audit-rows");
    if (!rows || !window.EventSource) return;
    var stream = rows.getAttribute("data-stream");
    var after = rows.getAttribute("data-after") || "0";
    var status = document.getElementById("live-status");
    var added = 0;
    var source = new EventSource(stream + (stream.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(after));
    source.addEventListener("open", function () {
      if (status) status.textContent = "Live: new records appear at the top as they are written.";
    });
    source.addEventListener("audit", function (event) {
      if (rows.querySelector('tr[data-seq="' + CSS.escape(event.lastEventId) + '"]')) return;
      var holder = document.createElement("tbody");
      holder.innerHTML = event.data; // rendered and escaped by the server
      var row = holder.firstElementChild;
      if (!row) return;
      row.classList.add("new");
      rows.insertBefore(row, rows.firstElementChild);
      var empty = document.getElementById("audit-empty");
      if (empty) empty.remove();
      added += 1;
      if (status) status.textContent = "Live: " + added + " new record" + (added === 1 ? "" : "s") + " since the page loaded.";
    });
    source.addEventListener("error", function () {
      if (status) status.textContent = "Reconnecting to the live feed…";
    });
  }

  function start() {
    drawUsageChart();
    followAudit();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
