// Ductwork dashboard: confirmations for actions and light polling of the
// parts of a page marked data-live.
(function () {
  "use strict";
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var msg = form.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) {
      ev.preventDefault();
    }
  });
  var body = document.body;
  var every = parseInt(body.getAttribute("data-poll-ms") || "0", 10);
  if (!every) {
    return;
  }
  function refresh() {
    var live = document.querySelectorAll("[data-live]");
    if (!live.length || document.hidden) {
      return;
    }
    fetch(window.location.href, { headers: { "X-Ductwork-Poll": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        live.forEach(function (el) {
          var next = doc.getElementById(el.id);
          if (next && next.innerHTML !== el.innerHTML) {
            el.innerHTML = next.innerHTML;
          }
        });
      })
      .catch(function () {});
  }
  window.setInterval(refresh, every);
})();
