// The room page's people panel and typing line: who is here (sorted, "(you)" marked, greyed
// while the socket is down) and who is typing (each state expiring after TYPING_EXPIRY_MS).
// DOM only: chat.js says what changed.

const TYPING_EXPIRY_MS = 6000; // a typing state expires after 6 s (docs/client.md)

// isEnded(): whether the session ended (then the "reconnecting" note stays hidden).
export function createPeople({ peopleEl, peopleCount, peopleBox, peopleStale, typingEl, me, isEnded }) {
  const typers = new Map(); // user -> expiry timer

  function personSelector(user) {
    return `li[data-user="${CSS.escape(user)}"]`;
  }

  // While the socket is down, who is here is not known: the dots go grey until presence
  // arrives again.
  function setPeopleStale(stale) {
    peopleBox.dataset.stale = stale ? "true" : "false";
    peopleStale.hidden = !stale || isEnded();
  }

  // A big room's presence lists some of its people and says how many there are in all
  // (`count`); the others are counted, not listed, and no join or leave is announced there.
  let unlisted = 0;

  function showCount() {
    const listed = peopleEl.querySelectorAll(":scope > li[data-user]").length;
    peopleCount.textContent = String(listed + unlisted);
    let more = peopleEl.querySelector(":scope > li.more");
    if (unlisted > 0) {
      if (!more) {
        more = document.createElement("li");
        more.className = "more muted";
      }
      more.textContent = `and ${unlisted} more`;
      peopleEl.append(more);
    } else if (more) more.remove();
  }

  function setPeople(users, count = users.length) {
    setPeopleStale(false);
    peopleEl.replaceChildren();
    unlisted = Math.max(0, count - users.length);
    for (const u of users) addPerson(u);
    showCount();
  }

  function addPerson(user) {
    if (peopleEl.querySelector(personSelector(user))) return;
    const li = document.createElement("li");
    li.dataset.user = user;
    li.textContent = user;
    if (user === me) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = " (you)";
      li.append(you);
    } else {
      // A direct conversation with them (the icon is drawn by CSS: the text stays the name).
      const dm = document.createElement("a");
      dm.className = "dm-link";
      dm.href = "/dm/" + encodeURIComponent(user);
      dm.title = "Direct message";
      dm.setAttribute("aria-label", "Direct message " + user);
      li.append(dm);
    }
    // Before the first one after it, or the "and N more" line.
    const after = [...peopleEl.children].find((o) => !o.dataset.user || o.dataset.user > user);
    peopleEl.insertBefore(li, after || null);
    showCount();
  }

  function removePerson(user) {
    const li = peopleEl.querySelector(personSelector(user));
    if (li) li.remove();
    showCount();
    setTyping(user, false);
  }

  function renderTyping() {
    const names = [...typers.keys()].sort();
    if (names.length === 0) typingEl.textContent = "";
    else if (names.length === 1) typingEl.textContent = `${names[0]} is typing…`;
    else if (names.length === 2) typingEl.textContent = `${names[0]} and ${names[1]} are typing…`;
    else typingEl.textContent = `${names.length} people are typing…`;
  }

  function setTyping(user, on) {
    clearTimeout(typers.get(user));
    typers.delete(user);
    if (on) typers.set(user, setTimeout(() => setTyping(user, false), TYPING_EXPIRY_MS));
    renderTyping();
  }

  function clearTypers() {
    for (const timer of typers.values()) clearTimeout(timer);
    typers.clear();
    renderTyping();
  }

  return { setPeopleStale, setPeople, addPerson, removePerson, setTyping, clearTypers };
}
