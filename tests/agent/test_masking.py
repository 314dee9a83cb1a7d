"""Secret masking: raw, base64 (any alignment) and percent-encoded forms, split streams."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest

from agents.agent.masking import MASK, StreamMasker, mask_secrets, secret_forms

SECRET = "hunter2-and-more"


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "Bearer x"])
def test_base64_of_text_containing_the_secret_is_masked(prefix: str) -> None:
    encoded = base64.b64encode(f"{prefix}{SECRET} tail".encode()).decode()
    masked = mask_secrets(f"header: {encoded}", [SECRET])
    assert MASK in masked
    assert encoded not in masked


def test_urlsafe_base64_and_percent_encoded_forms_are_masked() -> None:
    secret = "a/b+c?d=e&f g~>>>"
    text = " ".join(
        [
            base64.urlsafe_b64encode(secret.encode()).decode(),
            quote(secret, safe=""),
            quote_plus(secret),
            secret,
        ]
    )
    assert mask_secrets(text, [secret]) == " ".join([MASK] * 4)


def test_short_encoded_forms_are_not_masked_but_the_raw_value_is() -> None:
    forms = secret_forms(["ab"])
    assert forms == ("ab",)
    assert mask_secrets({"k": ["xaby", 3]}, ["ab"]) == {"k": ["x***y", 3]}


def test_longest_form_first() -> None:
    forms = secret_forms(["abc", "abcdefgh"])
    assert forms.index("abcdefgh") < forms.index("abc")
    assert mask_secrets("abcdefgh abc", ["abc", "abcdefgh"]) == "*** ***"


def test_stream_masker_catches_a_secret_split_at_every_position() -> None:
    text = f"before {SECRET} middle {SECRET}{SECRET} after"
    expected = mask_secrets(text, [SECRET])
    forms = secret_forms([SECRET])
    for first in range(len(text) + 1):
        for second in range(first, len(text) + 1, 7):
            masker = StreamMasker(forms)
            out = masker.feed(text[:first]) + masker.feed(text[first:second])
            out += masker.feed(text[second:]) + masker.finish()
            assert out == expected, (first, second)


def test_stream_masker_holds_back_only_a_short_tail() -> None:
    masker = StreamMasker(secret_forms([SECRET]))
    longest = max(len(form) for form in secret_forms([SECRET]))
    emitted = masker.feed("x" * 100)
    assert emitted == "x" * (100 - (longest - 1))
    assert masker.finish() == "x" * (longest - 1)


def test_without_secrets_text_passes_through_unchanged() -> None:
    masker = StreamMasker(())
    assert masker.feed("abc") == "abc"
    assert masker.finish() == ""
