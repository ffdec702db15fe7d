// dedupe ui: the only script of the page (served from this server; no inline script).
// It updates a restore's progress; every page works without it, only less conveniently.
"use strict";

function pollRestore(box) {
  const bar = document.getElementById("job-bar");
  const message = document.getElementById("job-message");
  const state = document.getElementById("job-state");
  const warnings = document.getElementById("job-warnings");
  const tick = async () => {
    let data;
    try {
      const response = await fetch(box.dataset.progress, { credentials: "same-origin" });
      if (!response.ok) {
        message.textContent = "The progress could not be read (logged out?). Reload the page.";
        return;
      }
      data = await response.json();
    } catch (error) {
      message.textContent = "The server did not answer. Reload the page.";
      return;
    }
    bar.value = data.percent;
    bar.textContent = data.percent + " %";
    message.textContent = data.message;
    warnings.replaceChildren(...data.warnings.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    if (data.running) {
      window.setTimeout(tick, 500);
    } else {
      state.textContent = "finished";
      message.className = data.ok ? "ok" : "bad";
    }
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("job");
  if (box && box.dataset.running === "yes") {
    pollRestore(box);
  }
  const source = document.getElementById("source");
  if (source) {
    source.addEventListener("change", () => source.form.submit());
  }
});
