import pytest

from orchestrator.engine import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        ("0", 0.0),
        ("0s", 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("45", 45.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("  10s  ", 10.0),
        ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4 + 0.005),
    ],
)
def test_valid_durations(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (-1, "negative"),
        ("-5s", "negative"),
        ("5x", "expected"),
        ("abc", "expected"),
        ("s", "expected"),
        ("5 m s", "expected"),
        ("5M", "expected"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (True, "invalid duration"),
        (None, "invalid duration"),
        ([1], "invalid duration"),
    ],
)
def test_invalid_durations(value, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)
