// The service worker (scope /, served at /sw.js): shows Web Push notifications and opens the
// room when one is clicked. docs/architecture.md, "Web Push". No fetch handler: pages are always
// fetched from the server, so nothing is ever served stale from a cache here.
import { notificationFor, shownInFocusedWindow, windowFor } from "/static/push-notice.js";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  event.waitUntil(show(event));
});

async function show(event) {
  let data = null;
  try {
    data = event.data ? event.data.json() : null;
  } catch {
    return;
  }
  const notice = notificationFor(data);
  if (!notice) return;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  if (shownInFocusedWindow(windows, notice)) return;
  await self.registration.showNotification(notice.title, notice.options);
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(open(url));
});

async function open(url) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const client = windowFor(windows, url);
  if (client) {
    const focused = await client.focus();
    if (new URL(client.url).pathname + new URL(client.url).hash !== url && focused.navigate) {
      await focused.navigate(url);
    }
    return;
  }
  await self.clients.openWindow(url);
}
