// Live updates: the service sends `change` when a write publishes a new fleet view; the page
// fetches itself again and swaps its main content (pages marked data-live="off", such as the
// what-if form, keep what the operator typed). Without JavaScript every page still works.
(function () {
  "use strict";
  if (!window.EventSource) { return; }
  var busy = false, again = false;
  function refresh(revision) {
    var main = document.getElementById("main");
    var live = document.getElementById("live");
    if (live) { live.textContent = "revision " + revision; }
    document.body.setAttribute("data-revision", revision);
    if (!main || main.getAttribute("data-live") !== "on") { return; }
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (fresh) { main.innerHTML = fresh.innerHTML; }
        document.body.setAttribute("data-refreshed", revision);
      })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(document.body.getAttribute("data-revision")); }
      });
  }
  var source = new EventSource("/ui/events");
  source.addEventListener("change", function (e) { refresh(e.data); });
  source.addEventListener("hello", function () {
    var live = document.getElementById("live");
    if (live) { live.classList.add("on"); }
  });
})();
