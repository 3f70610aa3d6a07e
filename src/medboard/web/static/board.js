// medboard: progressive enhancement only. Every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Filter forms apply themselves: at once for boxes and lists, after a pause while typing.
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    var timer = null;
    var send = function () { if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); } };
    form.addEventListener("change", function (event) {
      if (event.target.type === "search" || event.target.type === "number") { return; }
      send();
    });
    form.addEventListener("input", function (event) {
      if (event.target.type !== "search" && event.target.type !== "number") { return; }
      clearTimeout(timer);
      timer = setTimeout(send, 600);
    });
    // The search box keeps its focus and caret across the reload.
    var box = form.querySelector("input[type=search]");
    if (box && sessionStorage.getItem("medboard-search-focus") === location.pathname) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
    }
    form.addEventListener("submit", function () {
      var active = document.activeElement;
      if (active && active.type === "search") {
        sessionStorage.setItem("medboard-search-focus", location.pathname);
      } else {
        sessionStorage.removeItem("medboard-search-focus");
      }
    });
  });

  // The compare button says how many models are picked (the form itself needs no script).
  var compare = document.querySelector("button[form=compare]");
  if (compare) {
    var boxes = document.querySelectorAll("input[form=compare][name=ids]");
    var update = function () {
      var n = Array.prototype.filter.call(boxes, function (b) { return b.checked; }).length;
      compare.textContent = n ? "Compare " + n : "Compare";
    };
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    update();
  }

  // The queue page refreshes itself while jobs are pending or running.
  var queue = document.getElementById("queue");
  if (queue && queue.querySelector("tr[data-status=pending], tr[data-status=running]")) {
    setTimeout(function () { location.reload(); }, 5000);
  }
})();
