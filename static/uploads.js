// Files to attach, without the DOM: sizes as people read them, which of the files dropped,
// pasted or chosen to upload (within the server's limits, said before uploading), and the
// state of each upload (progress, done with its id, failed, cancelled). attach.js draws it
// and runs the uploads; node --test tests it (tests/js/uploads.test.mjs).

const UNITS = ["KB", "MB", "GB"];

// 1536 -> "1.5 KB": decimal-free below 10, as file managers show them.
export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = value < 10 ? value.toFixed(1).replace(/\.0$/, "") : String(Math.round(value));
  return `${shown} ${UNITS[unit]}`;
}

// The files a drop or a paste carries (`dataTransfer.files`, else its items of kind "file");
// text or links dropped are not files.
export function filesFrom(transfer) {
  if (!transfer) return [];
  const files = transfer.files ? [...transfer.files] : [];
  if (files.length > 0) return files;
  const items = transfer.items ? [...transfer.items] : [];
  return items
    .filter((item) => item.kind === "file")
    .map((item) => item.getAsFile())
    .filter(Boolean);
}

// Which of `files` to upload, given how many are attached already: each at most maxBytes, at
// most maxFiles in all. Returns {accepted, refused: [{name, why}]}.
export function chooseFiles(files, { maxBytes, maxFiles, already = 0 }) {
  const accepted = [];
  const refused = [];
  for (const file of files) {
    if (file.size === 0) {
      refused.push({ name: file.name, why: `${file.name || "The file"} is empty.` });
    } else if (file.size > maxBytes) {
      refused.push({
        name: file.name,
        why: `${file.name || "The file"} is ${formatSize(file.size)}: files are at most ${formatSize(maxBytes)}.`,
      });
    } else if (already + accepted.length >= maxFiles) {
      refused.push({ name: file.name, why: `At most ${maxFiles} files per message.` });
    } else {
      accepted.push(file);
    }
  }
  return { accepted, refused };
}

// A pasted screenshot is called "image.png" by every browser: give it a name worth keeping.
export function pastedName(name, type, now) {
  if (name && name !== "image.png") return name;
  const ext = (type || "image/png").split("/")[1] || "png";
  const d = new Date(now);
  const pad = (v) => String(v).padStart(2, "0");
  return `pasted-${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}-`
    + `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.${ext}`;
}

// The uploads of the message being written, in the order they were added.
export class Uploads {
  constructor() {
    this.entries = [];
    this.next = 1;
  }

  add(name, size) {
    const entry = { key: this.next, name, size, loaded: 0, status: "uploading", file: null, error: "" };
    this.next += 1;
    this.entries.push(entry);
    return entry;
  }

  get(key) {
    return this.entries.find((e) => e.key === key) || null;
  }

  progress(key, loaded, total) {
    const e = this.get(key);
    if (!e || e.status !== "uploading") return;
    if (total) e.size = total;
    e.loaded = Math.min(loaded, e.size);
  }

  // The server took it: `file` is its answer ({id, name, size, type, url, thumb, ...}).
  done(key, file) {
    const e = this.get(key);
    if (!e || e.status !== "uploading") return;
    e.status = "done";
    e.loaded = e.size;
    e.file = file;
  }

  failed(key, message) {
    const e = this.get(key);
    if (!e || e.status !== "uploading") return;
    e.status = "failed";
    e.error = message;
  }

  // Cancelled while uploading, or taken off once uploaded: either way not sent.
  remove(key) {
    this.entries = this.entries.filter((e) => e.key !== key);
  }

  // 0..100, for a progress bar.
  percent(key) {
    const e = this.get(key);
    if (!e || !e.size) return 0;
    return Math.round((100 * e.loaded) / e.size);
  }

  busy() {
    return this.entries.some((e) => e.status === "uploading");
  }

  // What the message carries: the files the server took, in order.
  ready() {
    return this.entries.filter((e) => e.status === "done").map((e) => e.file);
  }

  count() {
    return this.entries.filter((e) => e.status !== "failed").length;
  }

  clear() {
    this.entries = [];
  }
}

// The server's answer to a refused upload, as a sentence.
export function uploadError(status, body) {
  if (body && typeof body.message === "string" && body.message) return body.message;
  if (status === 413) return "The file is too large.";
  if (status === 429) return "You are uploading files too fast. Try again in a moment.";
  if (status === 0) return "The upload failed: the connection was lost.";
  return `The upload failed (${status}).`;
}
