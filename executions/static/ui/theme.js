// Applies the theme the user picked (if any) before the page paints; default follows the OS.
(function () {
  try {
    var theme = window.localStorage.getItem("sy-theme");
    if (theme === "light" || theme === "dark") {
      document.documentElement.setAttribute("data-theme", theme);
    }
  } catch (e) {
    /* storage unavailable: follow prefers-color-scheme */
  }
})();
