"""The security suites reuse the browser fixtures of the UI suite (same session stack)."""

from tests.ui.conftest import browser, login, page_errors  # noqa: F401
