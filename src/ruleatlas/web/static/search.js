// Progressive enhancement for /rules: filters as you type. Without it the form works as is.
(function () {
  var form = document.getElementById("search-form");
  var results = document.getElementById("results");
  if (!form || !results || !window.fetch) return;
  var timer = null, seq = 0;
  function refresh() {
    var url = form.action + "?" + new URLSearchParams(new FormData(form)).toString();
    var mine = ++seq;
    fetch(url, { headers: { Accept: "text/html" } }).then(function (r) { return r.text(); })
      .then(function (html) {
        if (mine !== seq) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("results");
        var facets = doc.querySelector(".facets");
        if (fresh) results.replaceWith(document.importNode(fresh, true));
        results = document.getElementById("results");
        var old = document.querySelector(".facets");
        if (facets && old) old.replaceWith(document.importNode(facets, true));
        history.replaceState(null, "", url);
      });
  }
  form.q.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  form.sort.addEventListener("change", function () { form.submit(); });
})();
