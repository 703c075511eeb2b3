/* Metrics tab: draws the Plotly figures embedded in the page (#job-metrics-data),
   then, while the job runs, fetches fresh ones every 5 s while the tab is visible
   and redraws them with Plotly.react; stops once the job is terminal. */
(function () {
  "use strict";

  var PERIOD_MS = 5000;
  var REQUEST_TIMEOUT_MS = 10000;
  var CONFIG = { displaylogo: false, responsive: true };
  var root = document.getElementById("job-metrics");
  var initial = document.getElementById("job-metrics-data");
  if (!root || !initial || !window.Plotly) {
    return;
  }
  var url = root.getAttribute("data-metrics-url");
  var timer = null;
  var busy = false;

  function draw(chart, figure) {
    // newPlot once, then react: react diffs and keeps the user's zoom.
    if (chart.classList.contains("js-plotly-plot")) {
      window.Plotly.react(chart, figure.data, figure.layout, CONFIG);
    } else {
      window.Plotly.newPlot(chart, figure.data, figure.layout, CONFIG);
    }
  }

  function render(payload) {
    var charts = Array.prototype.slice.call(root.querySelectorAll("[data-chart]"));
    // Every chart with data is shown before any is drawn, so each is sized
    // in the grid as it finally is, not as the only visible cell.
    charts.forEach(function (chart) {
      if (payload.charts[chart.getAttribute("data-chart")]) {
        chart.hidden = false;
      }
    });
    root.querySelectorAll("[data-group-empty]").forEach(function (empty) {
      var shown = empty.parentNode.querySelector("[data-chart]:not([hidden])");
      empty.hidden = shown !== null;
    });
    charts.forEach(function (chart) {
      var figure = payload.charts[chart.getAttribute("data-chart")];
      if (figure) {
        draw(chart, figure);
      }
    });
  }

  function refresh() {
    busy = true;
    return fetch(url, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
      signal: AbortSignal.timeout ? AbortSignal.timeout(REQUEST_TIMEOUT_MS) : undefined,
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (payload) {
        render(payload);
        if (payload.terminal) {
          window.clearInterval(timer);
          timer = null;
          root.removeAttribute("data-metrics-url");
        }
      })
      .catch(function () {
        // Keep the charts shown; the next poll tries again.
      })
      .then(function () {
        busy = false;
      });
  }

  function poll() {
    if (!document.hidden && !busy && timer !== null) {
      refresh();
    }
  }

  render(JSON.parse(initial.textContent));
  if (url) {
    timer = window.setInterval(poll, PERIOD_MS);
    document.addEventListener("visibilitychange", poll);
  }
})();
