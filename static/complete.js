// The composer's @name completion (docs/client.md): typing "@" and letters offers the people a
// mention would reach (those on the page first, then the server's answer from names.json),
// navigable with Up/Down, taken with Enter or Tab or a click, closed with Escape. The matching,
// ranking and inserting are mentions.js's; this draws the list and handles the keys.
import { completionAt, insertCompletion, rankNames } from "./mentions.js";

const FETCH_DELAY_MS = 120;

export function createCompletion({ room, me, mayHere, input, form, listEl, localNames }) {
  let open = null; // {start, query, names, active}
  let fetched = new Map(); // query -> names from the server
  let timer = null;

  function close() {
    open = null;
    listEl.hidden = true;
    listEl.replaceChildren();
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function candidates(query) {
    const names = [...localNames()];
    // The server's answer for the longest query asked that this one extends.
    for (let q = query; ; q = q.slice(0, -1)) {
      if (fetched.has(q)) {
        names.push(...fetched.get(q));
        break;
      }
      if (!q) break;
    }
    if (mayHere) names.push("here"); // everyone in the room: offered after the people
    return rankNames(query, names, { me });
  }

  function draw() {
    if (!open || open.names.length === 0) {
      listEl.hidden = true;
      listEl.replaceChildren();
      input.setAttribute("aria-expanded", "false");
      return;
    }
    listEl.replaceChildren(...open.names.map((name, i) => {
      const li = document.createElement("li");
      li.id = `completion-${i}`;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === open.active ? "true" : "false");
      li.textContent = "@" + name;
      // mousedown, not click: the textarea keeps its focus and caret.
      li.addEventListener("mousedown", (event) => {
        event.preventDefault();
        accept(i);
      });
      return li;
    }));
    listEl.hidden = false;
    input.setAttribute("aria-expanded", "true");
    input.setAttribute("aria-activedescendant", `completion-${open.active}`);
  }

  function refresh() {
    const at = completionAt(input.value, input.selectionStart);
    if (!at || input.selectionStart !== input.selectionEnd) {
      close();
      return;
    }
    const names = candidates(at.query);
    const active = open && open.start === at.start ? Math.min(open.active, Math.max(0, names.length - 1)) : 0;
    open = { ...at, names, active };
    draw();
    if (!fetched.has(at.query)) {
      clearTimeout(timer);
      timer = setTimeout(() => ask(at.query), FETCH_DELAY_MS);
    }
  }

  async function ask(query) {
    try {
      const url = `/rooms/${encodeURIComponent(room)}/names.json?q=${encodeURIComponent(query)}`;
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      if (fetched.size > 200) fetched = new Map(); // a long session's answers, bounded
      fetched.set(query, body.names || []);
      if (open && open.query === query) refresh();
    } catch (err) {
      // Offline: the names on the page are offered all the same.
    }
  }

  function accept(i) {
    if (!open || !open.names[i]) return;
    const done = insertCompletion(input.value, open.start, input.selectionStart, open.names[i]);
    input.value = done.text;
    input.setSelectionRange(done.caret, done.caret);
    close();
    // The composer counts characters and sends typing notices on input.
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.focus();
  }

  // On the form, capturing: the composer's own keys (Enter sends, Up edits) wait while the
  // list is open.
  form.addEventListener("keydown", (event) => {
    if (event.target !== input || !open || open.names.length === 0 || event.isComposing) return;
    const n = open.names.length;
    let handled = true;
    switch (event.key) {
      case "ArrowDown":
        open.active = (open.active + 1) % n;
        draw();
        break;
      case "ArrowUp":
        open.active = (open.active + n - 1) % n;
        draw();
        break;
      case "Enter":
      case "Tab":
        if (event.shiftKey) handled = false;
        else accept(open.active);
        break;
      case "Escape":
        close();
        break;
      default:
        handled = false;
    }
    if (handled) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  input.addEventListener("input", refresh);
  input.addEventListener("click", refresh);
  input.addEventListener("blur", () => setTimeout(close, 0));
  return { close };
}
