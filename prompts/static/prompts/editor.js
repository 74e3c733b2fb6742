// The prompt editor (prompts/_editor.html): one row per message, {{variables}} highlighted as you
// type and listed under each message, rows added, removed and moved in place, and the rows checked
// before the form is sent. Without this script the same buttons post the form and the server does
// the same work; the server checks everything again (prompts/forms.py, prompts/rendering.py's
// placeholder_problems, which the checks below mirror).
(function () {
  "use strict";

  const NAME = "[A-Za-z_][A-Za-z0-9_-]{0,99}";
  const INSIDE = new RegExp("^\\s*(?:hc:(" + NAME + ")(?::([A-Za-z]+))?|(" + NAME + "))\\s*$");
  const TYPES = ["string", "number", "boolean"];

  function snippet(text, start) {
    const piece = text.slice(start, start + 24).split(/\r\n|\r|\n/)[0];
    return piece + (text.length > start + piece.length ? "…" : "");
  }

  // The placeholders of one message: spans to highlight (ok or not) and the problems found.
  function scan(text) {
    const spans = [], problems = [];
    let position = 0;
    for (;;) {
      const start = text.indexOf("{{", position);
      if (start < 0) break;
      const end = text.indexOf("}}", start + 2);
      const following = text.indexOf("{{", start + 2);
      if (end < 0 || (following >= 0 && following < end)) {
        problems.push("'{{' in “" + snippet(text, start) + "” is never closed with '}}'");
        let stop = following >= 0 ? following : text.length;
        const lineEnd = text.indexOf("\n", start);
        if (lineEnd >= 0 && lineEnd < stop) stop = lineEnd;
        spans.push({ start: start, end: stop, ok: false });
        if (following < 0) break;
        position = following;
        continue;
      }
      const inside = text.slice(start + 2, end), whole = text.slice(start, end + 2);
      const match = inside.match(INSIDE);
      let ok = false;
      if (!inside.trim()) {
        problems.push("'" + whole + "' is empty: put a variable name between the braces");
      } else if (!match) {
        problems.push("'" + whole + "' is not a valid variable: a name starts with a letter or '_' " +
                      "and holds only letters, digits, '_' and '-'");
      } else if (match[2] && TYPES.indexOf(match[2]) < 0) {
        problems.push("unknown type '" + match[2] + "' in " + whole + " (use string, number or boolean)");
      } else {
        ok = true;
      }
      spans.push({ start: start, end: end + 2, ok: ok, text: whole });
      position = end + 2;
    }
    return { spans: spans, problems: problems };
  }

  function setUp(form) {
    const editor = form.querySelector("#prompt-editor[data-roles]");
    if (!editor) return;
    const list = editor.querySelector("#message-rows");
    const template = editor.querySelector("#message-row-template");
    const summary = editor.querySelector("#editor-errors");
    const roles = editor.dataset.roles.split(" ");
    let checking = !summary.hidden;  // after a refused save, the checks follow the typing

    function rows() {
      return Array.from(list.querySelectorAll("[data-message-row]"));
    }

    function label(index, role) {
      return "Message " + index + (roles.indexOf(role) >= 0 ? " (" + role + ")" : "");
    }

    function highlight(row) {
      const area = row.querySelector("textarea"), layer = row.querySelector(".message-highlight");
      const text = area.value, found = scan(text), fragment = document.createDocumentFragment();
      let at = 0;
      const names = [];
      found.spans.forEach(function (span) {
        fragment.appendChild(document.createTextNode(text.slice(at, span.start)));
        const mark = document.createElement("mark");
        mark.className = span.ok ? "var" : "var bad";
        mark.textContent = text.slice(span.start, span.end);
        fragment.appendChild(mark);
        at = span.end;
        if (span.ok && names.indexOf(span.text) < 0) names.push(span.text);
      });
      fragment.appendChild(document.createTextNode(text.slice(at) + "\n"));
      layer.replaceChildren(fragment);

      const vars = row.querySelector(".message-vars");
      vars.replaceChildren();
      if (names.length) {
        vars.appendChild(document.createTextNode("Variables: "));
        names.forEach(function (name) {
          const code = document.createElement("code");
          code.className = "var";
          code.textContent = name;
          vars.appendChild(code);
          vars.appendChild(document.createTextNode(" "));
        });
      } else {
        vars.textContent = "No variables.";
      }
      area.classList.add("grown");
      area.style.height = "auto";
      area.style.height = (area.scrollHeight + area.offsetHeight - area.clientHeight) + "px";
      layer.scrollTop = area.scrollTop;
      return found.problems;
    }

    function rowProblems(row) {
      const role = row.querySelector("select").value, content = row.querySelector("textarea").value;
      const problems = [];
      if (roles.indexOf(role) < 0) {
        problems.push("unknown role '" + role + "' (use " + roles.slice(0, -1).join(", ") + " or " +
                      roles[roles.length - 1] + ")");
      }
      if (!content.trim()) problems.push("content is empty");
      return problems.concat(scan(content).problems);
    }

    // Shows the problems of every row beside it and in the summary; returns how many there are.
    function check() {
      const all = [];
      const current = rows();
      current.forEach(function (row, i) {
        const role = row.querySelector("select").value;
        const box = row.querySelector(".message-errors");
        box.replaceChildren();
        const problems = rowProblems(row);
        problems.forEach(function (problem) {
          const line = label(i + 1, role) + ": " + problem;
          all.push(line);
          const p = document.createElement("p");
          p.className = "field-error";
          p.textContent = line;
          box.appendChild(p);
        });
        row.classList.toggle("has-error", problems.length > 0);
      });
      if (!current.length) all.push("add at least one message");
      const items = summary.querySelector("ul");
      items.replaceChildren();
      all.forEach(function (line) {
        const li = document.createElement("li");
        li.textContent = line;
        items.appendChild(li);
      });
      summary.hidden = all.length === 0;
      return all.length;
    }

    function renumber() {
      const current = rows();
      current.forEach(function (row, i) {
        const n = i + 1;
        const select = row.querySelector("select"), area = row.querySelector("textarea");
        const lab = row.querySelector(".message-label"), vars = row.querySelector(".message-vars");
        lab.textContent = "Message " + n;
        lab.htmlFor = select.id = "message-role-" + n;
        area.id = "message-content-" + n;
        vars.id = "message-vars-" + n;
        area.setAttribute("aria-label", "Message " + n + " content");
        area.setAttribute("aria-describedby", vars.id);
        row.querySelectorAll("[data-editor]").forEach(function (button) {
          const verb = button.dataset.editor;
          button.value = verb + "-" + n;
          button.setAttribute("aria-label", (verb === "remove" ? "Remove message " : "Move message ") + n +
                              (verb === "up" ? " up" : verb === "down" ? " down" : ""));
          button.disabled = (verb === "up" && n === 1) || (verb === "down" && n === current.length);
        });
      });
      const empty = list.querySelector("[data-empty]");
      if (empty) empty.hidden = current.length > 0;
      if (checking) check();
    }

    function wire(row) {
      const area = row.querySelector("textarea");
      area.addEventListener("input", function () {
        highlight(row);
        if (checking) check();
      });
      area.addEventListener("scroll", function () {
        row.querySelector(".message-highlight").scrollTop = area.scrollTop;
      });
      row.querySelector("select").addEventListener("change", function () {
        if (checking) check();
      });
      highlight(row);
    }

    rows().forEach(wire);
    window.addEventListener("resize", function () { rows().forEach(highlight); });

    editor.addEventListener("click", function (event) {
      const button = event.target.closest("button[data-editor]");
      if (!button) return;
      event.preventDefault();
      const verb = button.dataset.editor, row = button.closest("[data-message-row]");
      if (verb === "add") {
        const fresh = template.content.firstElementChild.cloneNode(true);
        list.appendChild(fresh);
        wire(fresh);
        renumber();
        fresh.querySelector("textarea").focus();
        return;
      }
      if (verb === "remove") {
        const next = row.nextElementSibling || row.previousElementSibling;
        row.remove();
        renumber();
        const target = next && next.matches("[data-message-row]") ? next.querySelector("textarea") :
          editor.querySelector("button[data-editor='add']");
        target.focus();
        return;
      }
      if (verb === "up" && row.previousElementSibling) {
        list.insertBefore(row, row.previousElementSibling);
      } else if (verb === "down" && row.nextElementSibling) {
        list.insertBefore(row.nextElementSibling, row);
      }
      renumber();
      const again = row.querySelector("button[data-editor='" + verb + "']");
      (again.disabled ? row.querySelector("textarea") : again).focus();
    });

    form.addEventListener("submit", function (event) {
      checking = true;
      if (check()) {
        event.preventDefault();
        const bad = list.querySelector(".message-row.has-error textarea");
        (bad || summary).focus();
        if (!bad) summary.scrollIntoView({ block: "center" });
      }
    });
  }

  function start() {
    document.querySelectorAll("form[data-prompt-form]").forEach(setUp);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
