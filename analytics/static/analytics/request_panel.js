// The request panel: a request opened beside the list it was clicked in (explorer, dashboard) or
// beside a session's trace, loaded as an HTML fragment of the request page (?panel=1).
// Progressive enhancement: every row and trace node is a link that works without this script;
// only plain left-clicks are taken over (ctrl/cmd/shift/middle-click open the page as usual).
// Over a list, the panel's request is kept in the URL hash (#request=<id>), so Back closes it and
// a link to it opens it; beside a session it is the page's own ?request=<id>.
(function () {
  "use strict";

  const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  let panel = null, body = null, current = null, loading = 0, opener = null;

  // Tabs of the request's content (Conversation, Request, Response, Headers), page and panel alike.
  document.addEventListener("click", function (event) {
    const tab = event.target.closest("[data-tab]");
    if (!tab) return;
    const box = tab.closest("section") || document;
    box.querySelectorAll("[data-tab]").forEach(t => t.setAttribute("aria-selected", String(t === tab)));
    box.querySelectorAll("[data-panel]").forEach(p => { p.hidden = p.dataset.panel !== tab.dataset.tab; });
  });

  function docked() { return !!document.querySelector(".request-panel.docked"); }
  function slug() { return location.pathname.split("/")[2]; }
  function fragmentUrl(id) { return "/o/" + encodeURIComponent(slug()) + "/requests/" + id + "/?panel=1"; }

  // The requests of the page in order (rows of the list, or the session's trace), each id once.
  function sequence() {
    const ids = [];
    document.querySelectorAll("[data-request-id]").forEach(function (el) {
      if (panel && panel.contains(el)) return;
      const id = el.dataset.requestId;
      if (ids.indexOf(id) < 0) ids.push(id);
    });
    return ids;
  }

  function ensurePanel() {
    if (panel) return panel;
    panel = document.getElementById("request-panel");
    if (!panel) {
      panel = document.createElement("aside");
      panel.id = "request-panel";
      panel.className = "request-panel overlay";
      panel.setAttribute("aria-label", "Request");
      panel.hidden = true;
      panel.innerHTML =
        '<div class="panel-bar">' +
        '<button type="button" class="secondary small" data-panel-prev title="Previous request (k)">↑ Previous</button>' +
        '<button type="button" class="secondary small" data-panel-next title="Next request (j)">↓ Next</button>' +
        '<span class="panel-position muted small"></span>' +
        '<button type="button" class="secondary small panel-close" data-panel-close title="Close (Esc)" aria-label="Close">✕</button>' +
        "</div>" +
        '<div class="panel-body" tabindex="-1"></div>';
      document.body.appendChild(panel);
    }
    body = panel.querySelector(".panel-body");
    current = panel.dataset.current || null;
    return panel;
  }

  function markSelected() {
    document.querySelectorAll(".panel-selected").forEach(el => { el.classList.remove("panel-selected"); el.removeAttribute("aria-current"); });
    if (!current) return;
    document.querySelectorAll('[data-request-id="' + current + '"]').forEach(function (el) {
      if (panel.contains(el)) return;
      el.classList.add("panel-selected");
      el.setAttribute("aria-current", "true");
    });
    const ids = sequence(), at = ids.indexOf(current);
    const position = panel.querySelector(".panel-position");
    if (position) position.textContent = at < 0 ? "" : (at + 1) + " of " + ids.length;
    const prev = panel.querySelector("[data-panel-prev]"), next = panel.querySelector("[data-panel-next]");
    if (prev) prev.disabled = at <= 0;
    if (next) next.disabled = at < 0 || at >= ids.length - 1;
  }

  // how: "push" (a click: Back closes or returns), "replace" (previous/next), or null (Back itself).
  function open(id, how) {
    if (!ID.test(id)) return;
    ensurePanel();
    const ticket = ++loading;
    current = id;
    panel.dataset.current = id;
    panel.hidden = false;
    panel.setAttribute("aria-busy", "true");
    document.documentElement.classList.toggle("panel-open", !docked());
    markSelected();
    return fetch(fragmentUrl(id), {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
      .then(function (response) {
        if (!response.ok) throw new Error(response.status === 404 ? "This request is not in this organization." :
                                          "Could not load this request (HTTP " + response.status + ").");
        return response.text();
      })
      .then(function (html) {
        if (ticket !== loading) return;
        if (how) remember(id, how);  // once it is on screen: the URL names what is shown
        body.innerHTML = html;
        body.scrollTop = 0;
        if (!docked()) body.focus({preventScroll: true});
      }, function (error) {
        if (ticket !== loading) return;
        if (how) remember(id, how);
        body.innerHTML = '<p class="alert error"></p>';
        body.firstChild.textContent = error.message;
      })
      .then(function () { if (ticket === loading) panel.removeAttribute("aria-busy"); });
  }

  function close(fromHistory) {
    if (!panel || panel.hidden || docked()) return;
    if (!fromHistory && history.state && history.state.pushed) {
      history.back();  // popstate closes it, and Forward reopens it
      return;
    }
    loading++;
    panel.hidden = true;
    current = null;
    delete panel.dataset.current;
    document.documentElement.classList.remove("panel-open");
    markSelected();
    // Keyboard users carry on from the row they opened.
    const back = opener && document.contains(opener) ? (opener.querySelector("a[href]") || opener) : null;
    if (back && back.focus) back.focus({preventScroll: true});
    opener = null;
    if (!fromHistory && location.hash) history.replaceState(null, "", location.pathname + location.search);
  }

  function remember(id, how) {
    let url;
    if (docked()) {
      const params = new URLSearchParams(location.search);
      params.set("request", id);
      url = location.pathname + "?" + params.toString();
    } else {
      url = location.pathname + location.search + "#request=" + id;
    }
    const pushed = how === "push" || !!(history.state && history.state.pushed);
    history[how === "push" ? "pushState" : "replaceState"]({requestPanel: id, pushed: pushed}, "", url);
  }

  function idInUrl() {
    if (docked()) return new URLSearchParams(location.search).get("request");
    const match = /^#request=(.+)$/.exec(location.hash);
    return match ? match[1] : null;
  }

  function step(delta) {
    const ids = sequence(), at = ids.indexOf(current);
    if (at < 0 || !ids[at + delta]) return;
    open(ids[at + delta], "replace");
  }

  // Opening: a row of a list (anywhere on it) or a trace node, on a plain left-click.
  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0) return;
    if (panel && panel.contains(event.target)) {
      if (event.target.closest("[data-panel-close]")) close(false);
      else if (event.target.closest("[data-panel-prev]")) step(-1);
      else if (event.target.closest("[data-panel-next]")) step(1);
      return;
    }
    const item = event.target.closest("[data-request-id]");
    if (!item) return;
    const link = event.target.closest("a");
    // A link to something else inside a row (a user, a session) keeps its own behaviour.
    if (link && link !== item && link.getAttribute("href") !== item.dataset.href) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      if (!link && item.dataset.href) window.open(item.dataset.href, "_blank", "noopener");
      return;
    }
    if (window.getSelection && String(window.getSelection()).length && !link) return;  // selecting text
    event.preventDefault();
    opener = item;
    const id = item.dataset.requestId;
    if (id === current && panel && !panel.hidden) return;
    open(id, !docked() && history.state && history.state.requestPanel ? "replace" : "push");
    // Beside a session on a narrow screen the panel sits below the trace: bring it into view.
    if (docked() && panel.getBoundingClientRect().top > window.innerHeight * 0.6) {
      panel.scrollIntoView({block: "start", behavior: "smooth"});
    }
  });

  document.addEventListener("keydown", function (event) {
    if (!panel || panel.hidden || event.metaKey || event.ctrlKey || event.altKey) return;
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "Escape" && typing && panel.contains(event.target)) event.target.blur();  // then Escape closes
    else if (event.key === "Escape" && !docked()) { event.preventDefault(); close(false); }
    else if (!typing && (event.key === "j" || event.key === "k")) { step(event.key === "j" ? 1 : -1); }
  });

  window.addEventListener("popstate", function () {
    const id = idInUrl();
    if (id && ID.test(id)) { if (id !== current) open(id, null); }
    else if (docked()) { const first = sequence()[0]; if (first && first !== current) open(first, null); }
    else close(true);
  });

  // Feedback and scores sent from the panel: saved, then the panel shows the request again.
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-panel-form]");
    if (!form || !panel || !panel.contains(form)) return;
    event.preventDefault();
    const data = new FormData(form);
    if (event.submitter && event.submitter.name) data.append(event.submitter.name, event.submitter.value);
    const error = form.parentElement.querySelector(".panel-error");
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"X-Requested-With": "fetch", "X-CSRFToken": data.get("csrfmiddlewaretoken") || ""}})
      .then(function (response) {
        return response.json().catch(() => ({})).then(function (answer) {
          if (!response.ok) throw new Error(answer.error || "Not saved (HTTP " + response.status + ").");
          return open(current, null);
        });
      })
      .catch(function (problem) {
        if (error) { error.textContent = problem.message; error.hidden = false; }
      });
  });

  function start() {
    if (!document.querySelector("[data-request-id]")) return;
    ensurePanel();
    if (docked()) { markSelected(); return; }
    const id = idInUrl();
    if (id && ID.test(id)) {
      history.replaceState({requestPanel: id}, "", location.href);
      open(id, null);
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
