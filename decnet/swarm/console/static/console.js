// decnet-ttp console: live countdowns to each state's end. Nothing else runs here;
// every page works without this file.
"use strict";
(function () {
  function span(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + r + "s";
    return r + "s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      var left = Date.parse(el.getAttribute("datetime")) - now;
      el.textContent = left > 0 ? "in " + span(left) : "expired";
      el.title = el.getAttribute("datetime");
    });
    document.querySelectorAll("time[data-ago]").forEach(function (el) {
      el.textContent = span(now - Date.parse(el.getAttribute("datetime"))) + " ago";
      el.title = el.getAttribute("datetime");
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
  });
})();
