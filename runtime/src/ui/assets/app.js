// Live refresh for the sluice dashboard: every 2, 5 or 10 s, fetch this page
// again and swap its <main>; paused by the button and while the tab is
// hidden. Everything else works without this script.
(function () {
  "use strict";
  var box = document.getElementById("refresh");
  var every = document.getElementById("refresh-every");
  var pause = document.getElementById("refresh-pause");
  if (!box || !every || !pause) return;
  box.hidden = false;
  var saved = window.localStorage.getItem("sluice-refresh");
  if (saved) every.value = saved;
  var paused = window.localStorage.getItem("sluice-refresh-paused") === "1";
  var timer = null;

  function label() { pause.textContent = paused ? "resume" : "pause"; }

  function refresh() {
    if (paused || document.hidden) return;
    // A form being filled in is left alone.
    var active = document.activeElement;
    if (active && active.closest && active.closest("main form")) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Sluice-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) main.replaceWith(fresh);
      })
      .catch(function () {});
  }

  function schedule() {
    if (timer) window.clearInterval(timer);
    timer = window.setInterval(refresh, Number(every.value) * 1000);
  }

  every.addEventListener("change", function () {
    window.localStorage.setItem("sluice-refresh", every.value);
    schedule();
  });
  pause.addEventListener("click", function () {
    paused = !paused;
    window.localStorage.setItem("sluice-refresh-paused", paused ? "1" : "0");
    label();
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
  label();
  schedule();
})();
