"""The command line asks glibc to keep freed memory, and leaves other allocators alone."""

from __future__ import annotations

import os

import pytest

from emabench.cli import memory


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


@pytest.mark.skipif(not _glibc(), reason="glibc's mallopt only")
def test_glibc_takes_both_settings() -> None:
    assert memory.keep_freed_memory() is True  # mallopt answers 1 only for a setting it took


def test_without_glibc_nothing_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.os, "confstr", lambda name: "musl 1.2")
    assert memory.keep_freed_memory() is False
