// Small behaviours every page may use, wired by data attributes (no inline handlers: the CSP
// allows scripts from this origin and nonced ones only).
(function () {
  "use strict";

  // <button data-copy="ID">: copies the text of element #ID and says so on the button.
  function copyText(text) {
    function fallback() {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      const copied = document.execCommand("copy");
      area.remove();
      if (!copied) throw new Error("the browser refused to copy");
    }
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(fallback);
    }
    return Promise.resolve().then(fallback);
  }

  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const label = button.dataset.label || (button.dataset.label = button.textContent);
    copyText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      button.dataset.state = "copied";
    }, function () {
      selectText(source);
      button.textContent = "Press Ctrl+C to copy";
      button.dataset.state = "failed";
    }).then(function () {
      clearTimeout(button.copyTimer);
      button.copyTimer = setTimeout(function () {
        button.textContent = label;
        delete button.dataset.state;
      }, 4000);
    });
  });

  // <input data-slug-from="ID">: filled from input #ID (an org's name) as it is typed, until the
  // user edits the slug themselves.
  function slugify(text) {
    return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
      .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60).replace(/-+$/, "");
  }

  document.querySelectorAll("input[data-slug-from]").forEach(function (slug) {
    const source = document.getElementById(slug.dataset.slugFrom);
    if (!source) return;
    let edited = slug.value !== "" && slug.value !== slugify(source.value);
    slug.addEventListener("input", function () { edited = slug.value !== ""; });
    source.addEventListener("input", function () {
      if (!edited) slug.value = slugify(source.value);
    });
  });

  // <form data-confirm="question">: a destructive action asks before it is sent.
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  // On a phone the org navigation scrolls within itself: bring the current page's item into view.
  document.addEventListener("DOMContentLoaded", function () {
    const nav = document.querySelector(".orgnav-inner");
    const current = nav && nav.querySelector('[aria-current="page"]');
    if (current && nav.scrollWidth > nav.clientWidth) {
      const offset = current.getBoundingClientRect().left - nav.getBoundingClientRect().left;
      nav.scrollLeft += offset - (nav.clientWidth - current.offsetWidth) / 2;
    }
  });
})();
