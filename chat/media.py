"""What an uploaded file is, from its content alone, and images made safe to show: decoded and
re-encoded with Pillow (only pixels survive: metadata, comments and whatever else a polyglot
hid are dropped; EXIF orientation applied), with a thumbnail made once. Everything that is not
a PNG, JPEG, GIF or WebP image is served only as a download. See docs/architecture.md, "Files".

Blocking (CPU and memory): chat.web.files runs `process` on a thread, a few at a time.
"""

from __future__ import annotations

import io
import tempfile
import unicodedata
import warnings
from dataclasses import dataclass
from typing import IO

import filetype
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from chat.errors import BadRequest, TooLarge

# The images shown inline: their type (sniffed), Pillow's format, the extension their name gets.
IMAGE_FORMATS = {
    "image/png": ("PNG", ".png"),
    "image/jpeg": ("JPEG", ".jpg"),
    "image/gif": ("GIF", ".gif"),
    "image/webp": ("WEBP", ".webp"),
}
DOWNLOAD = "application/octet-stream"
THUMB_TYPE = "image/webp"
# How much of a file the type is read from (filetype needs 261 bytes; some formats more).
SNIFF_BYTES = 8192
# Only what shows the pixels right survives re-encoding.
_KEPT_INFO = ("transparency", "duration", "loop", "background")


@dataclass(slots=True)
class Processed:
    """A file as it is stored: its type, its bytes (`body`, at position 0) and, for an image,
    its size in pixels and its thumbnail."""

    type: str
    size: int
    body: IO[bytes]
    width: int | None = None
    height: int | None = None
    thumb: bytes | None = None


def sniff(head: bytes) -> str:
    """The type the content says (magic numbers), never the name's or the client's."""
    kind = filetype.guess(head)
    return DOWNLOAD if kind is None else str(kind.mime)


def process(source: IO[bytes], *, max_pixels: int, thumb_pixels: int) -> Processed:
    """The file as it is to be stored: an image re-encoded (`TooLarge` over `max_pixels`,
    `BadRequest` when it claims to be an image and is not one), anything else as it came."""
    source.seek(0)
    head = source.read(SNIFF_BYTES)
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    kind = sniff(head)
    if kind not in IMAGE_FORMATS:
        return Processed(kind, size, source)
    pillow_format, _ = IMAGE_FORMATS[kind]
    try:
        with warnings.catch_warnings():
            # Pillow warns of a likely bomb below its own hard limit: a refusal here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the format the content claims: Pillow does not go looking for another.
            with Image.open(source, formats=[pillow_format]) as image:
                return _reencode(image, kind, max_pixels, thumb_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(_too_many_pixels(max_pixels)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadRequest(f"The file looks like a {pillow_format} image but is not one.") from exc


def _too_many_pixels(max_pixels: int) -> str:
    return f"The image has too many pixels (at most {max_pixels:,} in all its frames)."


def _reencode(image: Image.Image, kind: str, max_pixels: int, thumb_pixels: int) -> Processed:
    width, height = image.size
    frames = int(getattr(image, "n_frames", 1))
    # Checked before a pixel is decoded: the header says how big it would be.
    if width * height * frames > max_pixels or width < 1 or height < 1:
        raise TooLarge(_too_many_pixels(max_pixels))
    pillow_format, _ = IMAGE_FORMATS[kind]
    out = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (handed to the caller)
    if frames > 1 and kind in ("image/gif", "image/webp"):
        durations = []
        clean_frames = []
        for frame in ImageSequence.Iterator(image):
            durations.append(int(frame.info.get("duration", 100)))
            clean_frames.append(_clean(frame.copy()))
        first = clean_frames[0]
        first.save(
            out,
            pillow_format,
            save_all=True,
            append_images=clean_frames[1:],
            duration=durations,
            loop=int(image.info.get("loop", 0)),
        )
        still = first
    else:
        still = _clean(ImageOps.exif_transpose(image) or image)
        options: dict[str, object] = {}
        if pillow_format == "JPEG":
            if still.mode not in ("RGB", "L", "CMYK"):
                still = still.convert("RGB")
            options = {"quality": 90}
        elif pillow_format == "WEBP":
            options = {"quality": 90}
        still.save(out, pillow_format, **options)
    width, height = still.size
    size = out.tell()
    out.seek(0)
    return Processed(kind, size, out, width, height, _thumbnail(still, thumb_pixels))


def _clean(image: Image.Image) -> Image.Image:
    """The pixels and what shows them right; every other chunk the file carried is dropped."""
    image.load()
    image.info = {k: v for k, v in image.info.items() if k in _KEPT_INFO}
    return image


def _thumbnail(image: Image.Image, box: int) -> bytes:
    thumb = image.convert("RGBA" if _has_alpha(image) else "RGB")
    thumb.thumbnail((box, box))
    out = io.BytesIO()
    thumb.save(out, "WEBP", quality=80)
    return out.getvalue()


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


# Names shown and sent in headers: no paths, no control or direction-changing characters.
MAX_NAME_CHARS = 200
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}


def clean_name(name: str | None, kind: str) -> str:
    """A file name fit to show and to send in a Content-Disposition header: its last path
    component, without control or bidirectional-override characters, at most MAX_NAME_CHARS;
    an image's extension says what it really is."""
    raw = unicodedata.normalize("NFC", (name or "").replace("\\", "/").rsplit("/", 1)[-1])
    kept = "".join(
        c for c in raw if c not in _BIDI and unicodedata.category(c) not in ("Cc", "Cf", "Zl")
    )
    kept = " ".join(kept.split()).strip(". ") or "file"
    stem, dot, ext = kept.rpartition(".")
    if not dot:
        stem, ext = kept, ""
    if kind in IMAGE_FORMATS:
        real = IMAGE_FORMATS[kind][1]
        if "." + ext.lower() not in (real, ".jpeg" if real == ".jpg" else real):
            stem, ext = (kept if not dot else stem), real[1:]
    ext = ext[:16]
    stem = stem[: MAX_NAME_CHARS - len(ext) - 1] or "file"
    return f"{stem}.{ext}" if ext else stem
