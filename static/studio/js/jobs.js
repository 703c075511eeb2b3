/* Live job progress: every element with data-job-status-url is refreshed from that
   JSON every 2 s while the tab is visible, until its job reaches a terminal status. */
(function () {
  "use strict";

  var PERIOD_MS = 2000;
  var REQUEST_TIMEOUT_MS = 10000;
  var watched = Array.prototype.slice.call(
    document.querySelectorAll("[data-job-status-url]")
  );
  var timer = null;
  var busy = false;

  // Mirrors the `duration` template filter in studio_tags.py.
  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) {
      return "\u2014";
    }
    var total = Math.round(seconds);
    var hours = Math.floor(total / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var secs = total % 60;
    if (hours) {
      return hours + " h " + minutes + " min";
    }
    if (minutes) {
      return minutes + " min " + secs + " s";
    }
    return secs + " s";
  }

  function setText(root, selector, text) {
    root.querySelectorAll(selector).forEach(function (element) {
      element.textContent = text;
    });
  }

  function render(root, data) {
    root.querySelectorAll("[data-field=status] .status").forEach(function (badge) {
      badge.className = "status status-" + data.status;
      badge.textContent = data.status;
    });
    root.querySelectorAll(".progress").forEach(function (bar) {
      bar.className = "progress " + data.status;
      bar.setAttribute("aria-valuenow", data.percent);
      bar.firstElementChild.style.width = data.percent + "%";
    });
    setText(root, "[data-field=percent]", data.percent);
    setText(root, "[data-field=eta]", formatDuration(data.eta_seconds));
    setText(root, "[data-field=duration]", formatDuration(data.duration_seconds));
    Object.keys(data.counts).forEach(function (key) {
      setText(root, '[data-count="' + key + '"]', data.counts[key]);
    });
    root.querySelectorAll("[data-show-when-cancel-requested]").forEach(function (el) {
      el.hidden = !data.cancel_requested || data.terminal;
    });
  }

  function finished(root) {
    watched = watched.filter(function (other) {
      return other !== root;
    });
    // The job page is rendered again in its final state (timings, cause, logs).
    if (root.hasAttribute("data-reload-when-terminal")) {
      window.location.reload();
    }
  }

  function refresh(root) {
    return fetch(root.getAttribute("data-job-status-url"), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
      // A request that never answers must not stop the polling for good.
      signal: AbortSignal.timeout ? AbortSignal.timeout(REQUEST_TIMEOUT_MS) : undefined,
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        render(root, data);
        if (data.terminal) {
          finished(root);
        }
      })
      .catch(function () {
        // Keep what is shown; the next poll tries again.
      });
  }

  function poll() {
    if (document.hidden || busy) {
      return;
    }
    if (!watched.length) {
      window.clearInterval(timer);
      return;
    }
    busy = true;
    Promise.all(watched.map(refresh)).then(function () {
      busy = false;
    });
  }

  if (watched.length) {
    timer = window.setInterval(poll, PERIOD_MS);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        poll();
      }
    });
  }
})();
