// Django keeps only the base name of an uploaded file: for a folder input,
// send each file's path inside the folder to the hidden field it names.
(function () {
  "use strict";
  document.querySelectorAll("input[type=file][data-relative-paths]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.dataset.relativePaths);
      target.value = JSON.stringify(Array.from(input.files, function (file) {
        return file.webkitRelativePath || file.name;
      }));
    });
  });
  // Choosing new code unticks "keep the current code": the two exclude each other.
  document.querySelectorAll("[data-unchecks]").forEach(function (input) {
    var box = document.getElementById(input.dataset.unchecks);
    ["change", "input"].forEach(function (kind) {
      input.addEventListener(kind, function () { if (box) { box.checked = false; } });
    });
  });
})();
