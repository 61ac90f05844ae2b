// Web Push, the logic that needs no DOM (docs/architecture.md, "Web Push"): the VAPID key as
// bytes, a subscription as the form the server takes, a push payload as a notification, and
// whether an open window already shows what the push is about. Used by sw.js and
// push-account.js; tested by tests/js/push.test.mjs.

/** A base64url string (the server's VAPID public key) as the bytes subscribe() wants. */
export function base64UrlToBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** PushSubscription.toJSON() as the fields POST /push/subscribe reads; null if incomplete. */
export function subscriptionFields(json) {
  const keys = (json && json.keys) || {};
  if (!json || typeof json.endpoint !== "string" || !keys.p256dh || !keys.auth) return null;
  return { endpoint: json.endpoint, p256dh: keys.p256dh, auth: keys.auth };
}

function text(value, max) {
  return typeof value === "string" ? value.slice(0, max) : "";
}

/** The pushed JSON as showNotification(title, options); null if it is not ours. */
export function notificationFor(data) {
  if (!data || typeof data !== "object") return null;
  const room = text(data.room, 100);
  const seq = Number.isSafeInteger(data.seq) ? data.seq : null;
  if (!room || seq === null) return null;
  const title = text(data.title, 100) || room;
  const author = text(data.author, 100);
  const excerpt = text(data.excerpt, 300);
  let body;
  if (author && excerpt) body = `${author}: ${excerpt}`;
  else if (author) body = `New message from ${author}`;
  else body = `New message in ${title}`;
  const url = sameSitePath(data.url) || `/rooms/${encodeURIComponent(room)}`;
  return {
    title,
    options: {
      body,
      tag: `chat:${room}:${seq}`,
      data: { url, room, seq },
      icon: "/static/icon-192.png",
      badge: "/static/icon-192.png",
      timestamp: Date.now(),
    },
  };
}

/** A path on this site ("/rooms/x#m-5"), never another origin's URL. */
export function sameSitePath(url) {
  if (typeof url !== "string" || !url.startsWith("/") || url.startsWith("//")) return "";
  return url.slice(0, 2000);
}

function pathOf(url) {
  try {
    return new URL(url, "http://x").pathname;
  } catch {
    return "";
  }
}

/**
 * Whether one of the open windows ({url, focused, visibilityState}) already shows the room the
 * push is about, in front of the user: then the push adds nothing.
 */
export function shownInFocusedWindow(clients, notice) {
  const target = pathOf(notice.options.data.url);
  return clients.some(
    (c) => c.focused && c.visibilityState === "visible" && pathOf(c.url) === target,
  );
}

/** Which window a click should bring forward: one showing the room, else any of ours. */
export function windowFor(clients, url) {
  const target = pathOf(url);
  return clients.find((c) => pathOf(c.url) === target) || clients[0] || null;
}
