"""Headless Chromium driven by Selenium, for the page tests (Debian's chromium and chromium-driver: the Makefile
installs them). Started with the flags that work on a machine without a display or outside network."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

__all__ = ["chromium"]

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--window-size=1280,1180", "--force-device-scale-factor=1", "--hide-scrollbars")


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make test` installs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    return found


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with its own empty profile; quit (browser and driver) when the block ends."""
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium")
    for flag in _FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="labelserve-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(_executable("chromedriver")))
        try:
            yield driver
        finally:
            driver.quit()
