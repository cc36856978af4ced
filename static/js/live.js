/* Live pages: what a polling page says when a poll does not come back as a page part.
 *
 * htmx leaves the page as it is when a poll fails (no swap for an error status, none when
 * the connection is lost) and keeps polling; this says so in one line at the top of the
 * page instead of leaving a page that silently stopped changing, and clears it when a poll
 * succeeds again. A session that ended is not handled here: the server answers HX-Redirect
 * and the browser goes to the login page (app/web/security.py).
 */
(function () {
  "use strict";

  /* The viewer's time zone, for the server to show times in (app/web/times.py). */
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var current = (document.cookie.match(/(?:^|; )tz=([^;]*)/) || [])[1];
    if (zone && /^[A-Za-z0-9_+\-\/]+$/.test(zone) && current !== zone) {
      document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax" +
        (location.protocol === "https:" ? "; Secure" : "");
    }
  } catch (ignored) { /* an old browser: times stay in the server's zone */ }

  function isPoll(detail) {
    var headers = (detail.requestConfig && detail.requestConfig.headers) || {};
    return headers["X-Poll"] === "1";
  }

  function notice() {
    return document.getElementById("live-notice");
  }

  function say(text, kind) {
    var box = notice();
    if (!box) return;
    box.querySelector(".live-notice-text").textContent = text;
    box.className = "live-notice live-notice-" + kind;
    box.hidden = false;
  }

  function clear() {
    var box = notice();
    if (box && !box.hidden) {
      box.hidden = true;
      box.querySelector(".live-notice-text").textContent = "";
    }
  }

  document.addEventListener("htmx:responseError", function (event) {
    if (!isPoll(event.detail)) return;
    var status = event.detail.xhr.status;
    if (status === 403) {
      say("You may no longer see this page (your role changed?). It stopped updating: reload it or sign in again.", "stop");
    } else if (status === 404) {
      say("This no longer exists on the server (it was deleted?). The page stopped updating.", "stop");
    } else {
      say("The server failed to answer (" + status + "). Showing the last state; retrying…", "retry");
    }
  });

  document.addEventListener("htmx:sendError", function (event) {
    if (isPoll(event.detail)) say("Connection to the server lost. Showing the last state; retrying…", "retry");
  });

  document.addEventListener("htmx:timeout", function (event) {
    if (isPoll(event.detail)) say("The server is slow to answer. Showing the last state; retrying…", "retry");
  });

  /* What a person did on the page survives every swap: which panels (<details> with an id)
   * are open or closed, and where the keyboard focus is. A swap replaces the nodes, so it is
   * recorded just before and put back once the new nodes have settled. */
  var kept = null;

  function focusKey(element) {
    if (!element || element === document.body) return null;
    if (element.id) return "#" + CSS.escape(element.id);
    if (element.matches("a[href]")) return 'a[href="' + CSS.escape(element.getAttribute("href")) + '"]';
    var form = element.closest("form[action]");
    if (form && element.matches("button, input")) {
      return 'form[action="' + CSS.escape(form.getAttribute("action")) + '"] ' + element.tagName.toLowerCase();
    }
    return null;
  }

  document.addEventListener("htmx:beforeSwap", function () {
    var panels = {};
    document.querySelectorAll("details[id]").forEach(function (panel) { panels[panel.id] = panel.open; });
    kept = { panels: panels, focus: focusKey(document.activeElement) };
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!kept) return;
    Object.keys(kept.panels).forEach(function (id) {
      var panel = document.getElementById(id);
      if (panel) panel.open = kept.panels[id];
    });
    if (kept.focus && (document.activeElement === document.body || !document.activeElement)) {
      var target = document.querySelector(kept.focus);
      if (target) target.focus({ preventScroll: true });
    }
    kept = null;
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (isPoll(event.detail) && event.detail.successful) clear();
  });

  /* Versions (app/web/live.py): a poll says which version of the live part the page holds,
   * and keeps the version the answer names. 204 (nothing changed) and an answer of
   * out-of-band parts leave the polling element in place, so its version is set here; a
   * whole new part brings its own data-version. */
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (event.detail.headers["X-Poll"] === "1" && elt.dataset && elt.dataset.version) {
      event.detail.headers["X-Version"] = elt.dataset.version;
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt, xhr = event.detail.xhr;
    var version = xhr && xhr.getResponseHeader("X-Version");
    if (version && isPoll(event.detail) && elt.isConnected && xhr.status < 300) elt.dataset.version = version;
  });

  /* A poll that changed some steps of a running run sends their statuses for the DAG
   * picture, which is not sent again: each node's class and status line are set here. */
  function applyDagUpdate() {
    var update = document.getElementById("dag-update");
    if (!update || !update.dataset.steps || update.dataset.applied) return;
    update.dataset.applied = "1";
    var steps = JSON.parse(update.dataset.steps);
    Object.keys(steps).forEach(function (name) {
      var node = document.getElementById("step-" + name);
      var line = document.getElementById("status-" + name);
      if (node) node.setAttribute("class", "node step st-" + steps[name][0]);
      if (line) line.textContent = steps[name][1];
    });
  }

  document.addEventListener("htmx:afterSettle", applyDagUpdate);

  /* A run's status, announced when a poll changes it: the badge itself is in a part the
   * poll replaces, and a live region that is replaced is not reliably read out. */
  var lastStatus = null;

  function announceStatus() {
    var badge = document.getElementById("run-status"), region = document.getElementById("run-announce");
    if (!badge || !region) return;
    var status = badge.textContent.trim();
    if (lastStatus !== null && status !== lastStatus) {
      var title = document.querySelector(".run-head h1");
      region.textContent = (title ? title.textContent.replace(/\s+/g, " ").trim() + ": " : "") + status;
    }
    lastStatus = status;
  }

  announceStatus();
  document.addEventListener("htmx:afterSettle", announceStatus);

  /* Times count on between polls: "12 s ago" and "1 min 05 s so far" were right when the
   * server wrote them (data-ago, data-elapsed: seconds then); from then on the browser adds
   * the time since it received them, with its own clock only, never compared to the
   * server's. */
  function span(seconds) {
    if (seconds < 60) return seconds.toFixed(1) + " s";
    var minutes = Math.floor(seconds / 60), secs = Math.floor(seconds % 60);
    if (minutes < 60) return minutes + " min " + (secs < 10 ? "0" : "") + secs + " s";
    var hours = Math.floor(minutes / 60), mins = minutes % 60;
    return hours + " h " + (mins < 10 ? "0" : "") + mins + " min";
  }

  function ago(seconds) {
    if (seconds < 5) return "just now";
    if (seconds < 60) return Math.floor(seconds) + " s ago";
    var minutes = Math.floor(seconds / 60);
    return minutes === 1 ? "1\u00a0minute ago" : minutes + "\u00a0minutes ago";  // as Django's timesince
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-elapsed], [data-ago]").forEach(function (element) {
      if (!element.dataset.received) element.dataset.received = String(now);
      var since = (now - Number(element.dataset.received)) / 1000;
      if (element.dataset.elapsed) {
        element.textContent = span(Number(element.dataset.elapsed) + since) + " so far";
      } else {
        var seconds = Number(element.dataset.ago) + since;
        if (seconds >= 0 && seconds < 3600 && since >= 1) element.textContent = ago(seconds);  // later: the server's words
      }
    });
  }

  /* DAG zoom: buttons above each DAG picture (−, +, 1:1, fit). The picture is shown at its
   * natural size (1:1), or shrunk to fit its box but never below 75 %, and scrolls beyond
   * that; the zoom chosen for a page is kept for that page (sessionStorage) and put back
   * when a poll brings the picture again. */
  var ZOOMS = [0.25, 0.33, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 3];
  var MIN_FIT = 0.75;

  function zoomKey() { return "dag-zoom:" + location.pathname; }

  function setZoom(wrap, zoom) {
    zoom = Math.max(0.1, Math.min(3, zoom));
    wrap.style.setProperty("--zoom", String(zoom));
    var shown = wrap.previousElementSibling && wrap.previousElementSibling.querySelector("output");
    if (shown) shown.textContent = Math.round(zoom * 100) + " %";
    try { sessionStorage.setItem(zoomKey(), String(zoom)); } catch (ignored) { /* private mode */ }
  }

  function fitZoom(wrap) {
    var svg = wrap.querySelector("svg.dag");
    var natural = svg ? svg.getBoundingClientRect().width / (Number(wrap.style.getPropertyValue("--zoom")) || 1) : 0;
    return natural ? Math.min(1, (wrap.clientWidth - 8) / natural) : 1;
  }

  function addZoom() {
    document.querySelectorAll(".dag-wrap").forEach(function (wrap) {
      if (wrap.dataset.zoomReady || !wrap.querySelector("svg.dag")) return;
      wrap.dataset.zoomReady = "1";
      var bar = document.createElement("div");
      bar.className = "dag-zoom small";
      bar.setAttribute("role", "group");
      bar.setAttribute("aria-label", "Zoom the DAG");
      [["−", "Zoom out", -1], ["+", "Zoom in", 1], ["1:1", "Natural size", 0], ["Fit", "Fit the width", null]]
        .forEach(function (spec) {
          var button = document.createElement("button");
          button.type = "button";
          button.textContent = spec[0];
          button.title = spec[1];
          button.setAttribute("aria-label", spec[1]);
          button.dataset.zoomStep = spec[2] === null ? "fit" : String(spec[2]);
          bar.appendChild(button);
        });
      var shown = document.createElement("output");
      shown.setAttribute("aria-live", "polite");
      bar.insertBefore(shown, bar.children[1]);  // − 100 % + 1:1 Fit
      bar.addEventListener("click", function (event) {
        var button = event.target.closest("button");
        if (!button) return;
        var current = Number(wrap.style.getPropertyValue("--zoom")) || 1;
        var step = button.dataset.zoomStep;
        if (step === "fit") return setZoom(wrap, fitZoom(wrap));
        if (step === "0") return setZoom(wrap, 1);
        var next = step === "1" ? ZOOMS.filter(function (z) { return z > current + 0.001; })[0]
                                : ZOOMS.filter(function (z) { return z < current - 0.001; }).pop();
        setZoom(wrap, next || current);
      });
      wrap.parentNode.insertBefore(bar, wrap);
      var kept = null;
      try { kept = sessionStorage.getItem(zoomKey()); } catch (ignored) { /* private mode */ }
      // First view: shrunk to fit, but never below 75 % (9 px labels); wider ones scroll.
      setZoom(wrap, kept ? Number(kept) : Math.max(fitZoom(wrap), MIN_FIT));
    });
  }

  addZoom();
  document.addEventListener("htmx:afterSettle", addZoom);

  tick();
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSettle", tick);
})();
