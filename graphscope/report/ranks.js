"use strict";
const frame = document.getElementById("gs-rank");
const buttons = [...document.querySelectorAll("#gs-ranks button")];

function choose(rank) {
  const button = buttons.find((b) => b.dataset.rank === rank && !b.disabled) || buttons.find((b) => !b.disabled);
  if (!button) return;
  for (const b of buttons) b.classList.toggle("gs-on", b === button);
  frame.src = button.dataset.report;
  history.replaceState(null, "", "#rank-" + button.dataset.rank);
}

for (const b of buttons) b.addEventListener("click", () => choose(b.dataset.rank));
choose((location.hash.match(/^#rank-(\d+)$/) || [])[1]);
document.documentElement.dataset.ready = "1";
