"""Browser fixtures: a real server process and Debian's Chromium driven by Playwright.

Every test here is marked `e2e`. Without /usr/bin/chromium they skip locally and fail in CI
(`need`). Pages collect console errors, uncaught exceptions and dialogs so a test can assert
there were none.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    sync_playwright,
)

from tests.conftest import need
from tests.e2e.server import ChatServer
from tests.helpers import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = "root"
# Long enough for a reconnect after a server restart; short enough that a broken test ends soon.
TIMEOUT_MS = 10_000

_names = itertools.count(1)


@dataclass
class Person:
    """One person at one browser: a context of their own (cookies), one page, what went wrong."""

    name: str
    context: BrowserContext
    page: Page
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught: {exc}"))
        page.on("dialog", self._dialog)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def new_page(self) -> Page:
        return self.watch(self.context.new_page())


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    need(CHROMIUM.exists(), f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for the server; a test overrides it with `parametrize`."""
    return {}


@pytest.fixture
def chat_server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[ChatServer]:
    """A fresh server and database per test."""
    server = ChatServer(tmp_path / "var", **server_env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


PersonFactory = Callable[..., Person]


@pytest.fixture
def person(browser: Browser, chat_server: ChatServer) -> Iterator[PersonFactory]:
    """`person("alice")` registers alice in a new browser context; `person(ADMIN, login=True)`
    creates the administrator `root` and logs it in. The page is left on the rooms list."""
    contexts: list[BrowserContext] = []

    def make(
        name: str | None = None, *, login: bool = False, width: int = 1280, height: int = 800
    ) -> Person:
        name = name or f"user{next(_names)}"
        context = browser.new_context(
            base_url=chat_server.url, viewport={"width": width, "height": height}
        )
        contexts.append(context)
        someone = Person(name, context, context.new_page())
        page = someone.watch(someone.page)
        if login:
            if name == ADMIN:
                # Created on the running server's database the way an operator would; only
                # the tests that need an administrator pay for the extra process.
                chat_server.run_command(
                    "create-user", ADMIN, "--admin", "--password-stdin", stdin=PASSWORD + "\n"
                )
            page.goto("/login")
            page.get_by_label("Username").fill(name)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
        else:
            page.goto("/register")
            page.get_by_label("Username").fill(name)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("Password again").fill(PASSWORD)
            page.get_by_role("button", name="Register").click()
        page.wait_for_url(f"{chat_server.url}/")
        return someone

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
