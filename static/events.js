// Room events on the page, with no DOM: what a message's reactions look like to this reader,
// the `react` frame a click sends, what a reply's quote says, which message Up arrow edits.
// render.js and chat.js draw and send what this decides; tests/js/events.test.mjs checks it.

// The emoji the picker offers at once; any other single emoji can be typed in.
export const COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];

// reactions: [{emoji, users}] as the server sends them. Returns, per emoji in that order,
// {emoji, count, mine (this reader is among them), names ("ann, bob")}.
export function reactionView(reactions, me) {
  return (reactions || []).map((r) => ({
    emoji: r.emoji,
    count: r.users.length,
    mine: r.users.includes(me),
    names: r.users.join(", "),
  }));
}

// The frame that toggles this reader's `emoji` on message `m`: on when not theirs yet.
export function toggleReaction(room, m, emoji, me) {
  const found = (m.reactions || []).find((r) => r.emoji === emoji);
  const on = !(found && found.users.includes(me));
  return { type: "react", room, seq: m.seq, emoji, on };
}

// What a reply's quote says. `lookup(seq)` is the original's state if the page has it (its
// newest state: an edit or deletion it saw live), else undefined; the server's `reply` (the
// original as it stood when the reply was read) stands in for it. Returns null for no reply,
// else {seq, state: "kept" | "deleted" | "gone", user, text}.
export function quoteView(m, lookup) {
  if (m.reply_to === undefined || m.reply_to === null) return null;
  const seq = m.reply_to;
  const known = lookup(seq);
  const original = known !== undefined ? known : m.reply;
  if (!original) return { seq, state: "gone", user: "", text: "" };
  if (original.deleted) return { seq, state: "deleted", user: original.user, text: "" };
  const line = String(original.text).split("\n")[0];
  return { seq, state: "kept", user: original.user, text: line };
}

// The words a quote shows.
export function quoteText(q) {
  if (q.state === "gone") return "Reply to a message no longer kept";
  if (q.state === "deleted") return `Reply to ${q.user}: message deleted`;
  // Only a message that carries files has no text: say so rather than quote nothing.
  return q.text ? `${q.user}: ${q.text}` : `${q.user}: (a file)`;
}

// Up arrow in an empty composer edits this reader's last message: the seq of the newest of
// `messages` (oldest first, each {seq, user, deleted?}) that is theirs, or null.
export function lastEditable(messages, me) {
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const m = messages[i];
    if (m.user === me && m.seq !== undefined && !m.deleted) return m.seq;
  }
  return null;
}
