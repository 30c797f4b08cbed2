// Live refresh for taskmill's dashboard: re-fetch each section's fragment every few seconds,
// only while the tab is visible and the "live" box is ticked. No library, no CDN.
(function () {
  "use strict";
  const room = document.querySelector("[data-tm-every]");
  if (!room) return;
  const every = 1000 * Number(room.dataset.tmEvery || 5);
  const live = document.getElementById("tm-live");
  let busy = false;

  async function refresh() {
    if (busy || document.hidden || (live && !live.checked)) return;
    busy = true;
    try {
      const sections = document.querySelectorAll("[data-tm-fragment]");
      await Promise.all(Array.from(sections).map(async (section) => {
        const response = await fetch(section.dataset.tmFragment, {
          credentials: "same-origin",
          headers: { "X-Requested-With": "XMLHttpRequest" },
        });
        // A lost session (logged out) answers with the login page: keep what is shown.
        if (response.ok && !response.redirected) {
          section.innerHTML = await response.text();
        }
      }));
      room.dataset.tmRefreshedAt = new Date().toISOString();
    } catch (error) {
      // The server is restarting or the network is down: try again at the next tick.
    } finally {
      busy = false;
    }
  }

  setInterval(refresh, every);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
