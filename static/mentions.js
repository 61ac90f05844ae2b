// Mentions in the browser, without the DOM: where the caret is completing an @name, which
// names to offer, what accepting one does to the text, where a message names the reader, and
// the title and tag of a notification. The server decides who is told (chat/notify/); this
// only helps typing and reading. Tested by tests/js/mentions.test.mjs.

const NAME_CHAR = /[A-Za-z0-9_.-]/;
const MAX_NAME = 32;

// The @name being typed at `caret`: {start (the @'s index), query (what follows it)}, or null.
// "mail@exam" is an address, not a mention: the @ must start a word.
export function completionAt(text, caret) {
  let i = caret;
  while (i > 0 && caret - i <= MAX_NAME && NAME_CHAR.test(text[i - 1])) i -= 1;
  if (i === 0 || text[i - 1] !== "@") return null;
  const at = i - 1;
  if (at > 0 && (NAME_CHAR.test(text[at - 1]) || text[at - 1] === "@")) return null;
  // Inside an inline code span (an odd number of backticks before it on the line): no.
  const line = text.slice(text.lastIndexOf("\n", at) + 1, at);
  if ((line.match(/`/g) || []).length % 2 === 1) return null;
  return { start: at, query: text.slice(i, caret) };
}

// The names to offer for `query`, best first: names that start with it before names that only
// contain it, each group in the order given (callers list the likeliest first: people in the
// room, then recent authors, then the rest); never the reader; each name once, any case.
export function rankNames(query, names, { me = "", limit = 8 } = {}) {
  const q = query.toLowerCase();
  const seen = new Set([me.toLowerCase()]);
  const starts = [];
  const contains = [];
  for (const name of names) {
    const lower = name.toLowerCase();
    if (seen.has(lower)) continue;
    seen.add(lower);
    if (lower.startsWith(q)) starts.push(name);
    else if (q && lower.includes(q)) contains.push(name);
  }
  return starts.concat(contains).slice(0, limit);
}

// Accepting `name` for the completion that starts at `start`: the @name replaces what was typed
// of it, followed by one space; the caret goes after that space.
export function insertCompletion(text, start, caret, name) {
  let end = caret;
  while (end < text.length && NAME_CHAR.test(text[end])) end += 1; // the rest of the word
  const after = text.slice(end);
  const spacer = after.startsWith(" ") ? "" : " ";
  const before = text.slice(0, start) + "@" + name + spacer;
  return { text: before + after, caret: before.length + (spacer ? 0 : 1) };
}

// Where `text` mentions `name` (any case): [start, end) pairs of each "@name" that stands as a
// word (a dot after it may end the sentence). Also "@here" when `here` is set.
export function mentionRanges(text, name, { here = true } = {}) {
  const wanted = [name.toLowerCase()];
  if (here) wanted.push("here");
  const ranges = [];
  for (let i = text.indexOf("@"); i !== -1; i = text.indexOf("@", i + 1)) {
    if (i > 0 && (NAME_CHAR.test(text[i - 1]) || text[i - 1] === "@")) continue;
    let end = i + 1;
    while (end < text.length && NAME_CHAR.test(text[end])) end += 1;
    let word = text.slice(i + 1, end).toLowerCase();
    if (!wanted.includes(word)) {
      // "@bob." at the end of a sentence.
      const trimmed = word.replace(/[.-]+$/, "");
      if (!wanted.includes(trimmed)) continue;
      end -= word.length - trimmed.length;
      word = trimmed;
    }
    ranges.push([i, end]);
  }
  return ranges;
}

// The document title with the count of notifications missed while hidden: "(3) #general · chat".
export function titleWithCount(title, count) {
  const bare = title.replace(/^\(\d+\) /, "");
  return count > 0 ? `(${count}) ${bare}` : bare;
}

// One tag per message: the browser shows one notification for it, whether the page or the
// service worker (Web Push) shows it.
export function notificationTag(room, seq) {
  return `chat:${room}:${seq}`;
}

// What a desktop notification says for a `notify` frame.
export function notificationText(frame) {
  const title = frame.reason === "direct" ? frame.title : `${frame.author} in ${frame.title}`;
  const body = frame.excerpt || `New message in ${frame.title}`;
  return { title, body };
}

// The message a URL's fragment points at ("#m42" -> 42), or null.
export function targetSeq(hash) {
  const match = /^#m(\d{1,15})$/.exec(hash || "");
  return match ? Number(match[1]) : null;
}
