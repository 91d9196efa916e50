"""The headless browser of the browser-demo tests: whether it is there, and waiting on the page's state."""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when Debian's chromium and playwright are there)."""
    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        return "needs Debian's chromium (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (pip install playwright; no browser download needed)"
    return None


def wait_js(page, expression: str, timeout: float) -> None:
    """Poll ``expression`` in the page until it is truthy; fail with the demo's state after ``timeout`` s.

    page.wait_for_function evaluates strings with eval(), which the page's CSP forbids (as it should);
    page.evaluate goes through the debugger protocol and is not subject to it.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {expression}: {page.evaluate('window.unilsDemo')}")
        page.wait_for_timeout(100)
