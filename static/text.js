// Words and times the room page shows, without the DOM (unit-tested with node --test).

// "5:03 PM" or "17:03", as the reader's locale writes it (not "05:03 PM").
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

export function formatTime(ms, format = timeFormat) {
  return format.format(new Date(ms));
}

const dayFormat = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "numeric", minute: "2-digit",
});

// The time alone today, with the day otherwise ("Nov 29, 5:03 PM"): one format for lists.
export function formatWhen(ms, now = Date.now(), formats = [timeFormat, dayFormat]) {
  const sameDay = new Date(ms).toDateString() === new Date(now).toDateString();
  return (sameDay ? formats[0] : formats[1]).format(new Date(ms));
}

// The whole date and time, for a tooltip.
export function formatFull(ms, format = fullFormat) {
  return format.format(new Date(ms));
}

// What to tell someone whose session the server ended (close 1008; docs/protocol.md lists the
// reasons). An admin's reason, if any, follows a ": ".
export function endedMessage(reason) {
  const text = String(reason || "");
  const colon = text.indexOf(": ");
  const why = colon >= 0 ? text.slice(colon + 2) : "";
  const kind = colon >= 0 ? text.slice(0, colon) : text;
  const because = why ? ` Reason: ${why}` : "";
  if (kind.startsWith("kicked")) return `An administrator removed you from the chat.${because}`;
  if (kind.startsWith("banned")) return `An administrator banned your account.${because}`;
  if (kind === "logged out everywhere") return "You were logged out everywhere.";
  if (kind === "logged out") return "You logged out in another tab.";
  if (kind.startsWith("password changed")) return "Your password was changed.";
  if (kind === "signed out") return "You are signed out.";
  return `Your session ended${text ? ` (${text})` : ""}.`;
}
