(function () {
  "use strict";
  var grid = document.getElementById("gallery");
  var filter = document.getElementById("au-filter");
  var sorter = document.getElementById("map-sort");
  var count = document.getElementById("gallery-count");
  if (!grid || !filter || !sorter) { return; }
  var items = Array.prototype.slice.call(grid.querySelectorAll(".map-card"));

  function applyFilter() {
    var au = filter.value, shown = 0;
    items.forEach(function (item) {
      var match = au === "all" || item.getAttribute("data-au") === au;
      item.hidden = !match;
      if (match) { shown += 1; }
    });
    if (count) { count.textContent = shown + " of " + items.length + " maps shown"; }
  }

  function number(item, key, missing) {
    var value = parseFloat(item.getAttribute(key));
    return isNaN(value) ? missing : value;
  }

  function applySort() {
    var byDistance = sorter.value === "distance";
    items.sort(function (a, b) {
      if (byDistance) {
        var d = number(b, "data-distance", -Infinity) - number(a, "data-distance", -Infinity);
        if (d !== 0 && !isNaN(d)) { return d; }
      }
      return number(a, "data-map", 0) - number(b, "data-map", 0);
    });
    items.forEach(function (item) { grid.appendChild(item); });
  }

  filter.addEventListener("change", applyFilter);
  sorter.addEventListener("change", applySort);
  applySort();
  applyFilter();
}());
