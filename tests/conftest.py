"""Shared fixtures. The picture generators and edits live in tests/images.py."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import images  # noqa: E402 - the generators; test modules import from it directly
from dedupe.config import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_report_header(config):
    return f"dedupe tests: generated pictures; HEIC {'on' if images.HAVE_HEIF else 'off (pillow_heif missing)'}"


@pytest.fixture(autouse=True)
def no_user_config(tmp_path_factory, monkeypatch):
    """Tests never read the real per-user config file: it points at a path that does not exist."""
    missing = tmp_path_factory.mktemp("userconf") / "dedupe" / "config.toml"
    monkeypatch.setattr("dedupe.config.user_config_path", lambda: missing)
    return missing


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Tests never use the real per-user feature cache: the default points into a fresh folder."""
    path = tmp_path_factory.mktemp("usercache") / "dedupe" / "features.sqlite"
    monkeypatch.setattr("dedupe.cachefile.default_path", lambda: path)
    monkeypatch.setattr("dedupe.cache.default_path", lambda: path)
    return path


@pytest.fixture
def serial() -> Settings:
    """Settings for library tests: one process, no pool start-up."""
    return Settings(workers=1)


@pytest.fixture
def cli_env(tmp_path) -> dict:
    """Environment for `python -m dedupe` runs: no real user config or cache (XDG points into tmp)."""
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package, never a downloaded one) driven by Playwright, for pages opened
    from file://. Skipped on a machine without it, except in CI (CI=true), where a missing browser fails."""
    if not os.environ.get("CI"):
        if not CHROMIUM:
            pytest.skip("no Chromium on this machine (CI installs Debian's chromium)")
        pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()
