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
})();
