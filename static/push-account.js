// The account page's "Notify me on this browser": asks for permission on the click (never on
// load), subscribes with the server's VAPID key and posts the subscription (same origin, the
// page's CSRF token). docs/architecture.md, "Web Push".
import { base64UrlToBytes, subscriptionFields } from "./push-notice.js";
import { registration } from "./sw-register.js";

const setup = document.getElementById("push-setup");
const button = document.getElementById("push-enable");
const status = document.getElementById("push-status");

function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function say(text) {
  status.textContent = text;
}

async function post(path, fields) {
  const token = document.querySelector('input[name="csrf_token"]').value;
  const body = new URLSearchParams({ ...fields, csrf_token: token });
  const response = await fetch(path, { method: "POST", body, credentials: "same-origin" });
  let answer = {};
  try {
    answer = await response.json();
  } catch {
    answer = { error: `The server answered ${response.status}.` };
  }
  if (!response.ok) throw new Error(answer.error || `The server answered ${response.status}.`);
  return answer;
}

async function enable() {
  button.disabled = true;
  try {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      say("Notifications are blocked for this site: allow them in the browser's site settings.");
      return;
    }
    const reg = (await registration) && (await navigator.serviceWorker.ready);
    if (!reg) throw new Error("The service worker could not start.");
    const key = base64UrlToBytes(setup.dataset.vapidKey);
    let sub = await reg.pushManager.getSubscription();
    if (sub && !sameKey(sub, key)) {
      await sub.unsubscribe(); // made with another server key: it would never deliver
      sub = null;
    }
    if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    const fields = subscriptionFields(sub.toJSON());
    if (!fields) throw new Error("The browser gave an incomplete subscription.");
    await post("/push/subscribe", fields);
    say("This browser will be notified.");
    location.reload();
  } catch (error) {
    say(`Could not set up notifications: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function sameKey(sub, key) {
  const current = sub.options && sub.options.applicationServerKey;
  if (!current) return true;
  const bytes = new Uint8Array(current);
  return bytes.length === key.length && bytes.every((b, i) => b === key[i]);
}

async function showState() {
  // Only reads: permission is asked on the click, never on load.
  if (Notification.permission !== "granted") return;
  const reg = await registration;
  const sub = reg && (await reg.pushManager.getSubscription());
  if (sub) say("This browser has a subscription; press the button again if it is not listed.");
}

if (setup && button) {
  if (supported()) {
    setup.hidden = false;
    button.addEventListener("click", enable);
    showState().catch(() => {});
  } else {
    document.getElementById("push-unsupported").hidden = false;
  }
}
