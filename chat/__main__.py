"""`python -m chat`: serve (the default), migrate, create-user, reset-password, vapid-key."""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import logging
import socket
import ssl
import sys
import warnings
from collections.abc import Sequence

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning

from chat import resets
from chat.app import create_app
from chat.errors import ChatError, MigrationRefused
from chat.notify import vapid
from chat.server import descriptors, gctune, logs, tls
from chat.server.logs import AccessLogger
from chat.server.workers import MAX_WORKERS, Supervisor, listen
from chat.settings import Settings, SettingsError
from chat.storage.store import Store
from chat.web.passwords import MAX_PASSWORD, MIN_PASSWORD, PasswordHasher

log = logging.getLogger("chat")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve the chat (the default)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    commands.add_parser("migrate", help="upgrade the database to the latest schema")
    create = commands.add_parser("create-user", help="create an account, or promote one")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="make the account an admin")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    reset = commands.add_parser(
        "reset-password",
        help="give an account a temporary password (changed at its next login); ends its sessions",
    )
    reset.add_argument("username")
    commands.add_parser(
        "vapid-key", help="print a new Web Push (VAPID) key pair for VAPID_PRIVATE_KEY"
    )
    args = parser.parse_args(argv)
    if args.command == "vapid-key":
        # Needs no settings: an operator makes one key and gives it to every node.
        private = vapid.new_private_key()
        print(f"VAPID_PRIVATE_KEY={private}")
        print(f"# public key (applicationServerKey): {vapid.Vapid(private, '').public_key}")
        return 0

    try:
        settings = Settings.from_env()
        ssl_context = tls.server_context(settings)
    except SettingsError as exc:
        print(f"chat: bad setting: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    # Alembic narrates every plugin it loads at INFO; its warnings are what matter.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiohttp-session keys its storage with a plain string, which aiohttp now warns about
    # (chat.web.auth.sessions uses that key too).
    warnings.filterwarnings(
        "ignore", category=NotAppKeyWarning, module=r"aiohttp_session|chat\.auth"
    )
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "create-user":
            return asyncio.run(
                _create_user(settings, args.username, args.admin, args.password_stdin)
            )
        if args.command == "reset-password":
            return asyncio.run(_reset_password(settings, args.username))
        return _serve(settings, getattr(args, "workers", 1), ssl_context)
    except MigrationRefused as exc:
        print(f"chat: cannot upgrade the database: {exc}", file=sys.stderr)
        return 2


def _serve(settings: Settings, workers: int, ssl_context: ssl.SSLContext | None = None) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        print(f"chat: --workers: expected 1 to {MAX_WORKERS}, got {workers}", file=sys.stderr)
        return 2
    if workers == 1:
        # Bound here, before anything says "serving": a taken port is one clear line.
        sock = _listen(settings)
        if sock is None:
            return 1
        _log_serving(settings, sock.getsockname()[1], 1)
        _run_app(settings, sock, ssl_context)
        return 0
    if settings.redis_url is None:
        print(
            f"chat: --workers {workers} needs REDIS_URL: the processes share messages and "
            "presence through Redis (e.g. REDIS_URL=redis://127.0.0.1:6379/0)",
            file=sys.stderr,
        )
        return 2
    # Migrate once here, before forking, so the workers do not race each other to do it.
    asyncio.run(_migrate(settings, quiet=True))
    sock = _listen(settings)
    if sock is None:
        return 1
    _log_serving(settings, sock.getsockname()[1], workers)
    return Supervisor(
        settings, workers, lambda s, child_sock: _run_app(s, child_sock, ssl_context)
    ).run(sock)


def _listen(settings: Settings) -> socket.socket | None:
    """The listening socket, or None after saying in one line why there is none."""
    try:
        return listen(settings.host, settings.port)
    except OSError as exc:
        where = f"{_host_for_url(settings.host)}:{settings.port}"
        if exc.errno == errno.EADDRINUSE:
            print(
                f"chat: port {settings.port} on {settings.host} is already in use; "
                f"stop what uses it or pick another port with CHAT_PORT "
                f"(e.g. CHAT_PORT={settings.port + 1} make run)",
                file=sys.stderr,
            )
        else:
            print(f"chat: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return None


def _log_serving(settings: Settings, port: int, workers: int) -> None:
    log.info(
        "serving on %s://%s:%d%s",
        settings.scheme,
        _host_for_url(settings.host),
        port,
        f" with {workers} workers" if workers > 1 else "",
        extra={"event": "serving", "scheme": settings.scheme, "port": port, "workers": workers},
    )


def _run_app(
    settings: Settings, sock: socket.socket | None, ssl_context: ssl.SSLContext | None
) -> None:
    # Before the app opens anything (each worker does it, and logs it, for itself).
    descriptors.raise_limit()
    app = create_app(settings)
    app.on_startup.append(gctune.tune_after_startup)
    web.run_app(
        app,
        loop=_event_loop(),
        host=None if sock else settings.host,
        port=None if sock else settings.port,
        sock=sock,
        ssl_context=ssl_context,
        shutdown_timeout=settings.shutdown_timeout,
        print=None,
        access_log=logging.getLogger("chat.access"),
        access_log_class=AccessLogger,
    )


def _event_loop() -> asyncio.AbstractEventLoop | None:
    """uvloop when it is installed (the `fast` extra): cheaper sockets and callbacks."""
    try:
        import uvloop
    except ImportError:
        return None
    log.info("event loop: uvloop")
    return uvloop.new_event_loop()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _migrate(settings: Settings, *, quiet: bool = False) -> int:
    store = await Store.open(settings.database_url, history_limit=settings.history_limit)
    await store.close()
    if not quiet:
        print("chat: database is at the latest schema")
    return 0


async def _create_user(settings: Settings, username: str, admin: bool, from_stdin: bool) -> int:
    store = await Store.open(settings.database_url, history_limit=settings.history_limit)
    try:
        existing = await store.user_by_name(username)
        if existing is not None:
            if not admin:
                print(f"chat: {username!r} exists; pass --admin to promote it", file=sys.stderr)
                return 1
            await store.set_admin(existing.id, True)
            print(f"chat: {username!r} is now an admin")
            return 0
        password = _read_password(from_stdin)
        if password is None:
            return 1
        hasher = PasswordHasher(
            time_cost=settings.password_time_cost, memory_kib=settings.password_memory_kib
        )
        try:
            user = await store.create_user(username, await hasher.hash(password), admin=admin)
        except ChatError as exc:
            print(f"chat: {exc.message}", file=sys.stderr)
            return 1
        role = "admin" if user.is_admin else "user"
        print(f"chat: created {role} {user.username!r}")
        return 0
    finally:
        await store.close()


async def _reset_password(settings: Settings, username: str) -> int:
    store = await Store.open(settings.database_url, history_limit=settings.history_limit)
    try:
        user = await store.user_by_name(username)
        if user is None:
            print(f"chat: there is no user named {username!r}", file=sys.stderr)
            return 1
        hasher = PasswordHasher(
            time_cost=settings.password_time_cost, memory_kib=settings.password_memory_kib
        )
        password = await resets.reset_password(store, hasher, user)
        await store.log_moderation("(shell)", "reset-password", target=user.username)
        print(f"chat: temporary password for {user.username!r}: {password}")
        print(f"chat: {user.username!r} must change it at the next login; their sessions ended")
        return 0
    finally:
        await store.close()


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("chat: the passwords do not match", file=sys.stderr)
            return None
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        print(f"chat: passwords are {MIN_PASSWORD} to {MAX_PASSWORD} characters", file=sys.stderr)
        return None
    return password


if __name__ == "__main__":
    sys.exit(main())
