// The rooms list stays live: people online, unread and mention counts, polled from /rooms.json.
// Room names only ever go in as text. An ES module (strict by itself).

(function () {
  const list = document.getElementById("rooms");
  if (!list) return;
  const POLL_MS = 3000;
  let timer = null;

  // "<number> <words>": the span (its class and title) and, inside it, the number's span.
  function counter(className, title, numberClass, words) {
    const span = document.createElement("span");
    span.className = className;
    span.title = title;
    const number = document.createElement("span");
    number.className = numberClass;
    span.append(number, words);
    return span;
  }

  function roomItem(name) {
    const li = document.createElement("li");
    li.dataset.room = name;
    const link = document.createElement("a");
    link.href = "/rooms/" + encodeURIComponent(name);
    link.textContent = "#" + name;
    li.append(
      link, " ",
      counter("online", "people in the room now", "count", " online"), " ",
      counter("unread", "unread messages", "n", " unread"), " ",
      counter("mentions", "messages that mention you", "n", " @"),
    );
    return li;
  }

  function render(rooms) {
    for (const r of rooms) {
      let li = list.querySelector(`li[data-room="${CSS.escape(r.name)}"]`);
      if (!li) {
        li = roomItem(r.name);
        list.append(li);
      }
      li.querySelector(".count").textContent = String(r.online);
      const unread = li.querySelector(".unread");
      unread.querySelector(".n").textContent = String(r.unread);
      unread.hidden = r.unread === 0;
      showMentions(li, r);
    }
  }

  function showMentions(li, r) {
    const badge = li.querySelector(".mentions");
    if (!badge) return;
    badge.querySelector(".n").textContent = String(r.mentions || 0);
    badge.hidden = !r.mentions;
  }

  // Direct messages: the other person's presence and the unread count, on the entries shown
  // (a new conversation appears on the next page load).
  function renderDirect(direct) {
    for (const d of direct || []) {
      const li = document.querySelector(`#direct li[data-room="${CSS.escape(d.name)}"]`);
      if (!li) continue;
      const presence = li.querySelector(".presence");
      presence.dataset.online = d.online ? "true" : "false";
      presence.textContent = d.online ? "online" : "away";
      const unread = li.querySelector(".unread");
      unread.querySelector(".n").textContent = String(d.unread);
      unread.hidden = d.unread === 0;
      showMentions(li, d);
    }
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const response = await fetch("/rooms.json", { headers: { Accept: "application/json" } });
      if (response.status === 401) return; // logged out: the page will say so on next click
      if (response.ok) {
        const data = await response.json();
        render(data.rooms);
        renderDirect(data.direct);
      }
    } catch (err) {
      // Offline or the server is restarting: try again on the next tick.
    }
    if (!document.hidden) timer = setTimeout(poll, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  // Coming back with the back button shows a cached page: refresh it at once.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) poll();
  });
  timer = setTimeout(poll, POLL_MS);
})();
