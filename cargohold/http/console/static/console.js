// Cargohold console: small enhancements; every page works without them.
"use strict";
(function () {
  // Filter table rows as you type (the form still filters on the server without JS).
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var table = document.querySelector(input.getAttribute("data-filter"));
    if (!table) return;
    input.addEventListener("input", function () {
      var text = input.value.trim().toLowerCase();
      table.querySelectorAll("tbody tr[data-name]").forEach(function (row) {
        row.hidden = text !== "" && row.getAttribute("data-name").toLowerCase().indexOf(text) < 0;
      });
    });
  });
  // Copy buttons (hidden without JS, since they need the clipboard API).
  var copyText = function (text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain HTTP on a non-local host has no clipboard API: copy through a selection instead.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr";
    document.body.appendChild(area);
    area.select();
    var copied = document.execCommand("copy");
    document.body.removeChild(area);
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  };
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var label = button.textContent;
      copyText(button.getAttribute("data-copy")).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1500);
      }, function () { button.textContent = "Copy failed"; });
    });
  });
  // Confirm dialogs for destructive actions.
  document.querySelectorAll("[data-confirm]").forEach(function (element) {
    element.addEventListener("click", function (event) {
      if (!window.confirm(element.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
  // Typed confirmation: the delete button stays disabled until the name matches.
  document.querySelectorAll("input[data-must-equal]").forEach(function (input) {
    var button = input.form.querySelector("button[type=submit]");
    var check = function () { button.disabled = input.value !== input.getAttribute("data-must-equal"); };
    input.addEventListener("input", check);
    check();
  });
  // JSON editors: validate as you type, and refuse to submit invalid JSON.
  document.querySelectorAll("textarea[data-json]").forEach(function (area) {
    var status = area.form.querySelector(".json-status");
    var validate = function () {
      if (area.value.trim() === "") { status.textContent = ""; area.classList.remove("invalid"); return true; }
      try {
        var value = JSON.parse(area.value);
        if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("a JSON object is expected");
        status.textContent = "Valid JSON.";
        area.classList.remove("invalid");
        return true;
      } catch (error) {
        status.textContent = "Invalid JSON: " + error.message;
        area.classList.add("invalid");
        return false;
      }
    };
    area.addEventListener("input", validate);
    area.form.addEventListener("submit", function (event) {
      var submitter = event.submitter;
      if (submitter && /^delete/.test(submitter.value)) return;  // delete, delete_policy
      if (!validate()) { event.preventDefault(); area.focus(); }
    });
    validate();
  });
})();
