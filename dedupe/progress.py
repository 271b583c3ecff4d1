"""Progress and cancellation are passed into the library; both default to doing nothing."""

from __future__ import annotations

from typing import Callable, Protocol


class Cancelled(Exception):
    """Raised inside the library when the caller's cancel check says stop."""


class Progress(Protocol):
    def stage(self, title: str, total: int | None) -> None:
        """A new stage starts; `title` reads "k/N: what it does"."""

    def advance(self, n: int = 1) -> None:
        """`n` more items of the current stage are done."""

    def note(self, message: str) -> None:
        """One line about what remains after a stage (files -> decoded -> pairs -> groups)."""

    def close(self) -> None:
        """The scan is over."""


class NullProgress:
    def stage(self, title: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


CancelCheck = Callable[[], bool]


def never() -> bool:
    return False


def check(cancel: CancelCheck) -> None:
    if cancel():
        raise Cancelled()
