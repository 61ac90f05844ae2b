// How the room page takes a `history` frame (docs/protocol.md, "History and resume"). Pure
// logic, no DOM: chat.js applies the plan; tests/js/resume.test.mjs checks it with node --test.

// lastOf(messages, fallback): the seq of the last message, or `fallback` when there is none.
function lastOf(messages, fallback) {
  return messages.length > 0 ? messages[messages.length - 1].seq : fallback;
}

// planHistory(lastSeq, frame) for a page that shows a room up to seq `lastSeq` (0: nothing
// yet). Returns
//   reset     true: drop every confirmed message and notice first, then show `messages` as a
//             fresh page load would (the server's room is behind what the page shows: a
//             database restored from a backup, a lagging replica);
//   earlier   on a reset: whether to say that earlier messages are not kept (as a fresh page
//             does when the kept history does not reach back to the room's first message);
//   missed    how many messages after `lastSeq` are no longer kept (0: say nothing);
//   messages  the messages to add, in seq order (none the page already has, none deleted);
//   changes   the current state of messages the page may already show (edited, deleted,
//             reactions: each replaces what the page shows of it; a deleted one goes);
//   lastSeq   the page's last seq afterwards: the history's `last_seq` when it says more
//             (the newest messages may have been deleted), so the next live message is no gap.
export function planHistory(lastSeq, frame) {
  const all = frame.messages || [];
  const messages = all.filter((m) => !m.deleted);
  const roomLast = typeof frame.last_seq === "number" ? frame.last_seq : 0;
  if (frame.reset) {
    return {
      reset: true,
      earlier: !frame.complete && messages.length > 0,
      missed: 0,
      messages,
      changes: [],
      lastSeq: Math.max(roomLast, lastOf(messages, 0)),
    };
  }
  const fresh = messages.filter((m) => m.seq > lastSeq);
  const changes = all.filter((m) => m.seq <= lastSeq || m.deleted);
  let missed = 0;
  if (!frame.complete && lastSeq > 0) {
    // The first message the page gets after lastSeq; with none kept, the one after the room's last.
    const next = fresh.length > 0 ? fresh[0].seq : roomLast + 1;
    missed = Math.max(0, next - lastSeq - 1);
  }
  return {
    reset: false,
    earlier: false,
    missed,
    messages: fresh,
    changes,
    lastSeq: Math.max(lastSeq, lastOf(fresh, lastSeq), roomLast),
  };
}
