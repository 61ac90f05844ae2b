// Older history, as the reader scrolls up: the page renders the last page of the kept history
// (HISTORY_PAGE_SIZE); the rest comes a page at a time from history.json, above what is shown,
// without moving what the reader sees.

export const OLDER_MARGIN_PX = 200; // start loading this close to the top

// oldestSeq: where the rendered page begins; messageElement, regroup: from render.js.
export function createOlderLoader({ list, room, oldestSeq, messageElement, regroup }) {
  let loadingOlder = false;

  async function loadOlder() {
    const marker = document.getElementById("older");
    if (!marker || loadingOlder) return;
    loadingOlder = true;
    marker.setAttribute("aria-busy", "true");
    try {
      const url = `/rooms/${encodeURIComponent(room)}/history.json?before=${oldestSeq}`;
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) return; // signed out or away: the status badge says so; try later
      const page = await response.json();
      const before = list.scrollHeight;
      const top = list.scrollTop;
      const anchor = marker.nextSibling;
      for (const m of page.messages) list.insertBefore(messageElement(m), anchor);
      oldestSeq = page.oldest_seq;
      if (!page.older) {
        marker.remove();
        if (page.forgotten) {
          const gone = document.createElement("li");
          gone.className = "notice forgotten";
          gone.textContent = "Earlier messages are not kept.";
          list.insertBefore(gone, list.firstChild);
        }
      }
      regroup();
      list.scrollTop = top + (list.scrollHeight - before); // what was in view stays in view
    } catch (err) {
      // Unreachable: the next scroll to the top tries again.
    } finally {
      loadingOlder = false;
      marker.removeAttribute("aria-busy");
    }
  }

  return loadOlder;
}
