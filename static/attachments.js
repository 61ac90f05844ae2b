// A message's files, drawn: an image as its thumbnail, linking to the full size (a new tab);
// any other file as a card with its name, size and a download link. Names and types only
// ever as text. render.js calls it for every message it draws.
import { formatSize } from "./uploads.js";

export function drawFiles(li, files) {
  for (const old of li.querySelectorAll(":scope > .files")) old.remove();
  if (!Array.isArray(files) || files.length === 0) return;
  const box = document.createElement("div");
  box.className = "files";
  for (const f of files) box.append(f.thumb ? imageLink(f) : fileCard(f));
  li.querySelector(".text").after(box);
}

function imageLink(f) {
  const a = document.createElement("a");
  a.className = "file-image";
  a.href = f.url;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.title = `${f.name} (${formatSize(f.size)})`;
  const img = document.createElement("img");
  img.src = f.thumb;
  img.alt = f.name;
  img.loading = "lazy";
  // The thumbnail's box before it loads, so the timeline does not jump.
  if (f.width && f.height) {
    const scale = Math.min(1, 400 / Math.max(f.width, f.height));
    img.width = Math.max(1, Math.round(f.width * scale));
    img.height = Math.max(1, Math.round(f.height * scale));
  }
  a.append(img);
  return a;
}

function fileCard(f) {
  const a = document.createElement("a");
  a.className = "file-card";
  a.href = f.url;
  a.download = f.name;
  const name = document.createElement("span");
  name.className = "file-name";
  name.textContent = f.name;
  const size = document.createElement("span");
  size.className = "file-size";
  size.textContent = `${formatSize(f.size)} · download`;
  a.append(name, size);
  return a;
}
