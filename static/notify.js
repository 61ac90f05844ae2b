// Notifications on the room page (docs/client.md): the `notify` frames of any room, shown as a
// desktop notification and counted in the title while the tab is hidden; the reader's mentions
// highlighted in messages; the room's notification level; opening the page at a message.
// Permission is asked only when the reader clicks "Enable desktop notifications", never on
// load. The pure parts are mentions.js's.
import {
  mentionRanges, notificationTag, notificationText, targetSeq, titleWithCount,
} from "./mentions.js";

const SKIP = new Set(["CODE", "PRE", "A", "MARK", "SCRIPT", "STYLE"]);

// Wrap each "@me" (and "@here") in the message body's text nodes in <mark class="mention">,
// leaving code, preformatted text and links alone; the row is marked as a whole. The body may
// be text or server-sanitized markup: only its text nodes are split, nothing is parsed.
export function highlightMentions(li, me) {
  const body = li.querySelector(".text");
  if (!body || !me) return false;
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el && el !== body; el = el.parentElement) {
        if (SKIP.has(el.tagName)) return NodeFilter.FILTER_REJECT;
      }
      return node.nodeValue.includes("@") ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP;
    },
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  let found = false;
  for (const node of nodes) {
    const ranges = mentionRanges(node.nodeValue, me);
    // From the end, so the earlier offsets stay right as the node is split.
    for (const [start, end] of ranges.reverse()) {
      const tail = node.splitText(start);
      tail.splitText(end - start);
      const mark = document.createElement("mark");
      mark.className = "mention";
      tail.replaceWith(mark);
      mark.append(tail);
      found = true;
    }
  }
  li.classList.toggle("mentions-me", found);
  return found;
}

// The page's title while hidden: "(N) " for what the reader has missed, counted by several
// parts (this room's new messages by timeline.js, other rooms' notifications here), summed.
export function createTitleCount() {
  const baseTitle = document.title;
  const counts = new Map();
  return (key, n) => {
    counts.set(key, n);
    let total = 0;
    for (const v of counts.values()) total += v;
    document.title = titleWithCount(baseTitle, total);
  };
}

export function createNotifier({ room, me, jump, titleCount, elements }) {
  const { levelForm, levelSelect, levelSave, levelStatus, enableButton } = elements;
  let missed = 0; // notifications of other rooms while hidden (this room's: timeline.js)
  const supported = "Notification" in window;

  function showEnable() {
    if (!enableButton) return;
    enableButton.hidden = !supported || Notification.permission !== "default";
  }

  function onNotify(frame) {
    if (!document.hidden) return; // the reader is looking: the page and the sidebar say it
    if (frame.room !== room) {
      missed += 1;
      titleCount("notify", missed);
    }
    if (!supported || Notification.permission !== "granted") return;
    const { title, body } = notificationText(frame);
    const shown = new Notification(title, {
      body, tag: notificationTag(frame.room, frame.seq), data: { url: frame.url },
    });
    shown.addEventListener("click", () => {
      window.focus();
      shown.close();
      if (frame.room === room) {
        history.replaceState(null, "", `#m${frame.seq}`);
        jump(frame.seq);
      } else {
        location.assign(frame.url);
      }
    });
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    missed = 0;
    titleCount("notify", 0);
  });

  if (enableButton) {
    enableButton.addEventListener("click", async () => {
      try {
        await Notification.requestPermission();
      } catch (err) {
        // An old browser's callback form: the button stays for another try.
      }
      showEnable();
    });
    showEnable();
  }

  // The level saves as soon as it is chosen, without a reload; the form still works without
  // script (the Save button, then a redirect back).
  if (levelForm && levelSelect) {
    if (levelSave) levelSave.hidden = true;
    levelSelect.addEventListener("change", async () => {
      levelStatus.textContent = "Saving…";
      try {
        const response = await fetch(levelForm.action, {
          method: "POST",
          body: new URLSearchParams(new FormData(levelForm)),
          headers: { Accept: "application/json" },
        });
        levelStatus.textContent = response.ok ? "Saved" : "Not saved: reload and try again";
      } catch (err) {
        levelStatus.textContent = "Not saved: not connected";
      }
    });
  }

  // Set in another tab, or on another device: this page shows it too.
  function onLevel(frame) {
    if (!levelSelect || levelSelect.value === frame.level) return;
    levelSelect.value = frame.level;
    if (levelStatus) levelStatus.textContent = "Changed elsewhere";
  }

  // Opened at a message (a notification's link): show it.
  function openTarget() {
    const seq = targetSeq(location.hash);
    if (seq !== null) jump(seq);
  }

  return { onNotify, onLevel, openTarget, highlight: (li) => highlightMentions(li, me) };
}
