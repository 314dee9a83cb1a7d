"""After-commit hooks whose failure is logged instead of failing the committed request."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.db import transaction


def on_commit_robust(func: Callable[[], object]) -> None:
    """Run `func` once the current transaction commits; log its failure instead of raising it.

    Hooks publish to the broker and to live channels after the change is durable; what a failed
    hook did not publish, the sweeper publishes later. So a hook failing (typically because the
    database went away between the commit and the hook) must not make the request fail. Django
    5.2 names a failed robust hook in its log line by `func.__qualname__`, which a
    `functools.partial` lacks: the AttributeError escaped instead and a committed start answered
    500 (Django ticket #36487). Every hook is therefore registered under a named function."""
    target = func.func if isinstance(func, partial) else func
    name = getattr(target, "__qualname__", type(target).__qualname__)

    def hook() -> None:
        func()

    hook.__qualname__ = name
    transaction.on_commit(hook, robust=True)
