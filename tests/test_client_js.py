"""The browser client's logic that needs no DOM (static/*.js ES modules), run with `node --test`
as part of the suite: tests/js/*.test.mjs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import need

JS_TESTS = Path(__file__).resolve().parent / "js"


def test_the_client_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    need(node is not None, "node is not installed")
    assert node is not None
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))
    assert files, "no JavaScript tests found"
    done = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
