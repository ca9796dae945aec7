"""Headless Chromium for the web view's tests, screenshots and benchmark (Playwright driving
Debian's `chromium`; no browser download). Every request that is not to loopback is refused
and recorded, so a page that reaches for the network is caught."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str:
    """Debian's chromium (or `DAGAGENTS_CHROMIUM`)."""
    found = os.environ.get("DAGAGENTS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 820) -> Iterator[tuple[Any, list[str]]]:
    """A fresh page and the list of URLs it tried to load from outside loopback (refused)."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "about:")) or urlsplit(url).hostname in LOOPBACK_HOSTS:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            # The page's CSP forbids eval; Playwright's wait_for_function needs it (outside
            # requests are still refused by the route guard below).
            context = browser.new_context(
                viewport={"width": width, "height": height}, bypass_csp=True
            )
            context.route("**/*", guard)
            yield context.new_page(), outside
        finally:
            browser.close()
