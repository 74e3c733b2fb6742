// The explorer's filter builder (issue #22 item 3): the operator list follows the chosen field's
// kind (text: = ≠ contains; numbers: = ≠ > <; true/false: = ≠) and the property name shows only
// for "Property…" (deleting a saved view asks first through app.js's data-confirm). Without
// JavaScript the same form works: the server checks each condition and names what is wrong.
(function () {
  "use strict";
  const field = document.getElementById("fb-field");
  const op = document.getElementById("fb-op");
  const keyField = document.getElementById("fb-key-field");
  const value = document.getElementById("fb-value");
  const data = document.getElementById("fb-operators");
  if (field && op && data) {
    const operators = JSON.parse(data.textContent);
    const placeholders = {text: "Text", number: "A number", bool: "true or false"};
    function kind() {
      const option = field.options[field.selectedIndex];
      return (option && option.dataset.kind) || "text";
    }
    function sync() {
      const k = kind();
      const chosen = op.value;
      op.innerHTML = "";
      (operators[k] || []).forEach(function (pair) {
        const option = document.createElement("option");
        option.value = pair[0];
        option.textContent = pair[1];
        if (pair[0] === chosen) option.selected = true;
        op.appendChild(option);
      });
      if (keyField) keyField.hidden = field.value !== "property";
      value.placeholder = field.value === "status" ? "A number, or error" : placeholders[k];
      value.inputMode = k === "number" && field.value !== "status" ? "decimal" : "text";
    }
    // Suggestions: the values seen lately (the explorer's own datalists, and per property name).
    const lists = {model: "models", request_name: "names", status: "statuses", property: "fb-prop-values"};
    const key = document.getElementById("fb-key");
    const seen = document.getElementById("property-values");
    const propValues = document.getElementById("fb-prop-values");
    function suggest() {
      const list = lists[field.value];
      if (list) value.setAttribute("list", list); else value.removeAttribute("list");
      if (field.value === "property" && seen && propValues && key) {
        propValues.innerHTML = "";
        (JSON.parse(seen.textContent)[key.value] || []).forEach(function (v) {
          const option = document.createElement("option");
          option.value = v;
          propValues.appendChild(option);
        });
      }
    }
    field.addEventListener("change", function () { sync(); suggest(); });
    if (key) key.addEventListener("change", suggest);
    sync();
    suggest();
  }
})();
