"""Domain errors. Code raises these; the edges (HTTP middleware, the `/ws` read loop) turn them
into an HTTP status with a message or an `error` frame with a code, in one place each."""

from __future__ import annotations

from typing import ClassVar


class ChatError(Exception):
    """Base of every error a user can cause. `code` is the protocol's error code."""

    code: ClassVar[str] = "bad_request"
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref


class BadRequest(ChatError):
    code = "bad_request"


class UnknownType(ChatError):
    code = "unknown_type"


class TooLong(ChatError):
    code = "too_long"


class NoSuchRoom(ChatError):
    code = "no_such_room"
    status = 404


class NotJoined(ChatError):
    code = "not_joined"
    status = 409


class NoSuchUser(ChatError):
    code = "no_such_user"
    status = 404


class NoSuchMessage(ChatError):
    code = "no_such_message"
    status = 404


class NoSuchFile(ChatError):
    """An upload that is not there to attach or download (or not to this user)."""

    code = "no_such_file"
    status = 404


class TooLarge(ChatError):
    """An upload over a size limit (MAX_UPLOAD_BYTES, the quota, MAX_IMAGE_PIXELS)."""

    code = "too_large"
    status = 413


class Forbidden(ChatError):
    code = "forbidden"
    status = 403


class NameTaken(ChatError):
    code = "name_taken"
    status = 409


class InvalidName(ChatError):
    code = "invalid_name"


class LimitReached(ChatError):
    """A site-wide cap (not a rate): trying again later does not help by itself."""

    code = "limit_reached"
    status = 409


class Retryable(ChatError):
    """Refused for now; `retry_after` (seconds) tells the client when trying again makes sense."""

    def __init__(self, message: str, *, retry_after: float, ref: str | None = None) -> None:
        super().__init__(message, ref=ref)
        self.retry_after = retry_after


class TooMany(Retryable):
    """A limit was hit."""

    code = "rate_limited"
    status = 429


class Unavailable(Retryable):
    """The server could not do it just now (the database failed)."""

    code = "unavailable"
    status = 503


class MigrationRefused(Exception):
    """The database holds data the next schema cannot take; the message says what to fix.
    Not a `ChatError`: no user caused it, and the server must not start."""
