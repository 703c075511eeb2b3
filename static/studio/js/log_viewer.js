/* Outputs + logs: a job-folder file opens at its end and follows the job while it
   runs: every 2 s the byte cursor goes to the server and only new bytes come back.
   Earlier parts load when the view is scrolled to its top; search runs on the
   server. File text reaches the page only as text nodes (textContent), never as
   HTML. The page keeps about MAX_VIEW_CHARS of text and drops the far side. */
(function () {
  "use strict";

  var root = document.getElementById("job-files");
  if (!root) {
    return;
  }

  var PERIOD_MS = 2000;
  var CATCH_UP_MS = 100;
  var REQUEST_TIMEOUT_MS = 10000;
  var MAX_VIEW_CHARS = 2 * 1024 * 1024;
  var NEAR_PX = 40;
  var ERROR_LINE =
    /\b(?:ERROR|CRITICAL|FATAL)\b|Traceback \(most recent call last\)|^\s*[\w.]*(?:Error|Exception)(?::|\s*$)/;
  var WARNING_LINE = /\bWARN(?:ING)?\b/;

  var view = root.querySelector("[data-log]");
  var title = root.querySelector("[data-viewer-title]");
  var status = root.querySelector("[data-viewer-status]");
  var download = root.querySelector("[data-viewer-download]");
  var jumpEnd = root.querySelector("[data-jump-end]");
  var searchForm = root.querySelector("[data-search]");
  var results = root.querySelector("[data-search-results]");
  var refreshTree = root.querySelector("[data-refresh-tree]");
  var file = null; // the open file: path, cursors, what the view holds

  function address(base, params) {
    return base + "?" + new URLSearchParams(params).toString();
  }

  function getJson(url) {
    return fetch(url, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
      signal: AbortSignal.timeout ? AbortSignal.timeout(REQUEST_TIMEOUT_MS) : undefined,
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          if (!response.ok) {
            var error = new Error(data.error || "the server answered " + response.status);
            error.data = data;
            throw error;
          }
          return data;
        });
    });
  }

  function say(text) {
    status.textContent = text;
  }

  function formatSize(bytes) {
    var units = ["B", "KB", "MB", "GB", "TB"];
    var value = bytes;
    var unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit ? value.toFixed(1) : value) + " " + units[unit];
  }

  function kindOf(line) {
    if (ERROR_LINE.test(line)) {
      return "log-error";
    }
    return WARNING_LINE.test(line) ? "log-warning" : "";
  }

  function setKind(span, kind) {
    span.classList.remove("log-error", "log-warning");
    if (kind) {
      span.classList.add(kind);
    }
  }

  function splitLines(text) {
    var lines = [];
    var from = 0;
    while (from < text.length) {
      var newline = text.indexOf("\n", from);
      var to = newline === -1 ? text.length : newline + 1;
      lines.push(text.slice(from, to));
      from = to;
    }
    return lines;
  }

  // One chunk as an element: runs of plain lines become one text node;
  // highlighted, hit and unfinished lines their own span. `carry` is the
  // unfinished last line of the chunk before: its parts share the whole
  // line's highlight.
  function buildChunk(data, carry, hitFirstLine) {
    var element = document.createElement("span");
    element.className = "log-chunk";
    element.dataset.start = data.start;
    element.dataset.end = data.end;
    element.dataset.chars = data.text.length;
    element.dataset.fingerprint = data.fingerprint || "";
    var plain = "";
    var unfinished = null;
    function flush() {
      if (plain) {
        element.appendChild(document.createTextNode(plain));
        plain = "";
      }
    }
    splitLines(data.text).forEach(function (line, index) {
      var continued = index === 0 && carry;
      var whole = continued ? carry.text + line : line;
      var kind = kindOf(whole);
      var open = line.charAt(line.length - 1) !== "\n";
      var hit = index === 0 && hitFirstLine;
      if (!kind && !open && !continued && !hit) {
        plain += line;
        return;
      }
      flush();
      var span = document.createElement("span");
      span.textContent = line;
      setKind(span, kind);
      if (hit) {
        span.classList.add("log-hit");
      }
      element.appendChild(span);
      var spans = continued ? carry.spans.concat([span]) : [span];
      if (continued) {
        spans.forEach(function (part) {
          setKind(part, kind);
        });
      }
      if (open) {
        unfinished = { text: whole, spans: spans };
      }
    });
    flush();
    return { element: element, unfinished: unfinished };
  }

  function atBottom() {
    return view.scrollHeight - view.scrollTop - view.clientHeight <= NEAR_PX;
  }

  function scrollToEnd() {
    view.scrollTop = view.scrollHeight;
  }

  function append(data, hitFirstLine) {
    file.bottom = data.end;
    file.fingerprint = data.fingerprint;
    if (!data.text) {
      return;
    }
    var built = buildChunk(data, file.carry, hitFirstLine);
    view.appendChild(built.element);
    file.carry = built.unfinished;
    file.chars += data.text.length;
  }

  function prepend(data) {
    if (!data.text) {
      file.top = data.start;
      return;
    }
    var built = buildChunk(data, null, false);
    var height = view.scrollHeight;
    view.insertBefore(built.element, view.firstChild);
    view.scrollTop += view.scrollHeight - height; // keep the lines in view still
    file.top = data.start;
    file.chars += data.text.length;
  }

  function dropTop() {
    while (file.chars > MAX_VIEW_CHARS && view.children.length > 1) {
      file.chars -= Number(view.firstElementChild.dataset.chars);
      view.removeChild(view.firstElementChild);
      file.top = Number(view.firstElementChild.dataset.start);
    }
  }

  function dropBottom() {
    while (file.chars > MAX_VIEW_CHARS && view.children.length > 1) {
      file.chars -= Number(view.lastElementChild.dataset.chars);
      view.removeChild(view.lastElementChild);
      file.bottom = Number(view.lastElementChild.dataset.end);
      file.fingerprint = view.lastElementChild.dataset.fingerprint;
      file.carry = null;
      file.done = false; // the view no longer reaches the end
    }
  }

  // The view shows data alone: a file opened, jumped into, or replaced whole.
  function replaceWith(data, hitFirstLine) {
    view.textContent = "";
    file.top = data.start;
    file.chars = 0;
    file.carry = null;
    if (data.text.indexOf("\u0000") !== -1) {
      file.binary = true;
      say("This file looks binary: download it to read it.");
      return;
    }
    append(data, hitFirstLine);
  }

  function describe(data) {
    file.size = data.size;
    file.terminal = data.terminal;
    // Terminal was read before the file: nothing new now means nothing ever.
    if (data.terminal && file.bottom >= data.size) {
      file.done = true;
    }
    if (file.binary) {
      return;
    }
    jumpEnd.hidden = data.size - file.bottom <= MAX_VIEW_CHARS;
    var size = formatSize(data.size);
    if (file.done) {
      say("The job has ended: this is the whole file (" + size + ").");
    } else if (data.terminal) {
      say(size + "; scroll down to read on.");
    } else if (file.bottom >= data.size) {
      say("Following the job: new lines appear as they are written (" + size + ").");
    } else {
      say(size + "; scroll to the end to follow the job.");
    }
  }

  function failed(current) {
    return function (error) {
      if (file === current) {
        say("Cannot read " + current.path + ": " + error.message);
        // A file missing from a running job's folder may still appear.
        current.done = Boolean(error.data && error.data.terminal);
      }
    };
  }

  function request(current, params, use) {
    current.busy = true;
    return getJson(address(root.dataset.tailUrl, params))
      .then(
        function (data) {
          current.busy = false;
          if (file === current) {
            use(data);
          }
        },
        function (error) {
          current.busy = false;
          failed(current)(error);
        }
      )
      .then(function () {
        // A scroll to the top while this request ran asked for earlier parts.
        if (file === current && current.wantsEarlier) {
          loadEarlier();
        }
      });
  }

  // Earlier parts fill the view until it can scroll (or the file's start).
  function loadEarlier() {
    var current = file;
    if (!current || current.binary || current.top <= 0) {
      return;
    }
    current.wantsEarlier = current.busy;
    if (current.busy) {
      return;
    }
    var top = current.top;
    request(current, { path: current.path, before: top }, function (data) {
      prepend(data);
      if (file.chars > MAX_VIEW_CHARS) {
        dropBottom();
        describe({ size: file.size, terminal: file.terminal });
      }
      if (data.start < top && view.scrollHeight <= view.clientHeight) {
        window.setTimeout(loadEarlier, 0);
      }
    });
  }

  function loadEnd(current) {
    return request(current, { path: current.path }, function (data) {
      replaceWith(data, false);
      scrollToEnd();
      describe(data);
      if (view.scrollHeight <= view.clientHeight) {
        loadEarlier();
      }
    });
  }

  // The poll: the bytes after the cursor, while the view reaches the file's end
  // or the reader sits at the bottom of the view.
  function tick() {
    var current = file;
    if (!current || current.busy || current.done || current.binary || document.hidden) {
      return;
    }
    var live = current.bottom >= current.size && current.chars < MAX_VIEW_CHARS;
    if (!atBottom() && !live) {
      return;
    }
    var params = { path: current.path, offset: current.bottom };
    if (current.fingerprint) {
      params.fingerprint = current.fingerprint;
    }
    request(current, params, function (data) {
      var stick = atBottom();
      if (data.reset) {
        replaceWith(data, false);
        stick = true;
      } else {
        append(data, false);
      }
      if (stick) {
        dropTop();
        scrollToEnd();
      }
      describe(data);
      var behind = data.size - data.end;
      if (!file.done && behind > 0 && behind <= MAX_VIEW_CHARS && stick) {
        window.setTimeout(tick, CATCH_UP_MS); // catch up, a chunk at a time
      }
    });
  }

  function markInTree(path) {
    root.querySelectorAll("a[data-path]").forEach(function (link) {
      if (link.getAttribute("data-path") === path) {
        link.setAttribute("aria-current", "true");
        for (var node = link.parentElement; node && node !== root; node = node.parentElement) {
          if (node.tagName === "DETAILS") {
            node.open = true;
          }
        }
      } else {
        link.removeAttribute("aria-current");
      }
    });
  }

  function openFile(path, push) {
    file = {
      path: path,
      top: 0,
      bottom: 0,
      size: 0,
      chars: 0,
      fingerprint: "",
      carry: null,
      busy: false,
      wantsEarlier: false,
      done: false,
      binary: false,
      terminal: false,
    };
    title.textContent = path;
    download.href = address(root.dataset.downloadUrl, { path: path });
    download.hidden = false;
    searchForm.hidden = false;
    results.hidden = true;
    jumpEnd.hidden = true;
    view.hidden = false;
    view.textContent = "";
    markInTree(path);
    var query = "?" + new URLSearchParams({ path: path }).toString();
    if (push) {
      window.history.pushState({ path: path }, "", query);
    } else {
      window.history.replaceState({ path: path }, "", query);
    }
    if (refreshTree) {
      refreshTree.href = query;
    }
    say("Opening " + path + "\u2026");
    return loadEnd(file);
  }

  // A search result: the view restarts at that line, with what comes before it.
  function jumpTo(offset) {
    var current = file;
    request(current, { path: current.path, offset: offset }, function (data) {
      replaceWith(data, true);
      describe(data);
      request(current, { path: current.path, before: current.top }, function (earlier) {
        prepend(earlier);
        var hit = view.querySelector(".log-hit");
        if (hit) {
          var above = hit.getBoundingClientRect().top - view.getBoundingClientRect().top;
          view.scrollTop += above - view.clientHeight / 2;
          view.scrollIntoView({ block: "nearest" });
        }
      });
    });
  }

  function showResults(data) {
    var list = results.querySelector("ol");
    var summary = results.querySelector("[data-search-summary]");
    list.textContent = "";
    var count = data.matches.length;
    var text = count ? count + (data.more ? "+" : "") + " matching lines" : "No match";
    if (data.searched_bytes < data.size) {
      text += " in the last " + formatSize(data.searched_bytes) + " of the file";
    }
    summary.textContent = text + (data.more ? "; the first " + count + " are shown." : ".");
    data.matches.forEach(function (match) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = match.line_no ? "line " + match.line_no : "at byte " + match.offset;
      button.addEventListener("click", function () {
        jumpTo(match.offset);
      });
      var line = document.createElement("code");
      line.textContent = match.line;
      setKind(line, kindOf(match.line));
      item.appendChild(button);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(line);
      list.appendChild(item);
    });
    results.hidden = false;
  }

  searchForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var current = file;
    var needle = searchForm.elements.q.value;
    if (!current || !needle) {
      return;
    }
    getJson(address(root.dataset.searchUrl, { path: current.path, q: needle }))
      .then(function (data) {
        if (file === current) {
          showResults(data);
        }
      })
      .catch(failed(current));
  });

  root.querySelectorAll("a[data-path]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button) {
        return; // a new tab: the link's ?path= opens the file there
      }
      event.preventDefault();
      openFile(link.getAttribute("data-path"), true);
    });
  });

  jumpEnd.addEventListener("click", function () {
    if (file) {
      openFile(file.path, false);
    }
  });

  view.addEventListener("scroll", function () {
    if (!file) {
      return;
    }
    if (view.scrollTop <= NEAR_PX) {
      loadEarlier();
    } else if (atBottom()) {
      tick();
    }
  });

  window.addEventListener("popstate", function (event) {
    if (event.state && event.state.path) {
      openFile(event.state.path, false);
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      tick();
    }
  });

  window.setInterval(tick, PERIOD_MS);
  if (root.dataset.openPath) {
    openFile(root.dataset.openPath, false);
  }
})();
