// The live dashboard: every REFRESH_MS, fetch the board beside this page (with the page's
// query, which carries the access token off loopback) and swap it in. When the server stops
// answering (the run's process ended, or the tunnel dropped), say so and keep trying.
(function () {
  "use strict";
  var query = window.location.search;
  var lastOk = Date.now();
  var wait = REFRESH_MS;
  function tokenLinks() {
    var links = document.querySelectorAll("a.tok");
    for (var i = 0; i < links.length; i++) {
      links[i].setAttribute("href", links[i].getAttribute("href").split("?")[0] + query);
    }
  }
  function lost(text) {
    var el = document.getElementById("lost");
    if (!el) return;
    el.className = text ? "banner warn" : "";
    el.textContent = text;
  }
  function refresh() {
    fetch("board" + query, { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var y = window.scrollY;
        document.getElementById("board").innerHTML = html;
        window.scrollTo(0, y);
        tokenLinks();
        lastOk = Date.now();
        wait = REFRESH_MS;
        var state = document.getElementById("state");
        if (state) document.title = "Migration · " + state.textContent;
      })
      .catch(function () {
        var ago = Math.round((Date.now() - lastOk) / 1000);
        lost("The dashboard stopped answering " + ago + " s ago (the run's process may have ended, " +
          "or the connection dropped): these are the last figures it gave. " +
          "The run directory's report.html has the final ones.");
        wait = Math.min(wait * 2, 30000);
      })
      .then(function () { window.setTimeout(refresh, wait); });
  }
  tokenLinks();
  window.setTimeout(refresh, wait);
})();
