// Client-side search of an exported Rule Atlas site: search-index.json, DOM text nodes only.
(function () {
  var form = document.getElementById("static-search");
  if (!form) return;
  var params = new URLSearchParams(location.search);
  ["q", "source", "tactic", "technique"].forEach(function (k) {
    if (params.get(k) && form[k]) form[k].value = params.get(k);
  });
  var count = document.getElementById("count"), list = document.getElementById("hits"), rows = [];
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text) e.textContent = text; return e; }
  function run() {
    var words = form.q.value.toLowerCase().split(/\s+/).filter(Boolean);
    var src = form.source.value, tac = form.tactic.value, tech = (form.technique.value || "").toUpperCase();
    var hits = rows.filter(function (r) {
      if (src && r.s !== src) return false;
      if (tac && r.ta.indexOf(tac) < 0) return false;
      if (tech && !r.a.some(function (a) { return a === tech || a.indexOf(tech + ".") === 0; })) return false;
      var hay = (r.t + " " + (r.d || "") + " " + r.a.join(" ") + " " + r.id).toLowerCase();
      return words.every(function (w) { return hay.indexOf(w) >= 0; });
    });
    list.textContent = "";
    hits.slice(0, 200).forEach(function (r) {
      var li = el("li", "hit"), a = el("a", "hit-title", r.t);
      a.href = "rules/" + encodeURIComponent(encodeURIComponent(r.id)) + ".html";
      li.appendChild(a); li.appendChild(el("span", "tag", r.s));
      if (r.sv) li.appendChild(el("span", "sev sev-" + String(r.sv).toLowerCase().replace(/[^a-z]/g, ""), r.sv));
      if (r.d) li.appendChild(el("p", "snippet", r.d));
      if (r.a.length) li.appendChild(el("p", "techs", r.a.join(" ")));
      list.appendChild(li);
    });
    count.textContent = hits.length + " rule" + (hits.length === 1 ? "" : "s") + (hits.length > 200 ? " (first 200 shown)" : "");
  }
  fetch("search-index.json").then(function (r) { return r.json(); }).then(function (d) { rows = d; run(); })
    .catch(function () { count.textContent = "The search index could not be loaded (open the site over http)."; });
  form.addEventListener("input", run);
  form.addEventListener("submit", function (e) { e.preventDefault(); run(); });
})();
