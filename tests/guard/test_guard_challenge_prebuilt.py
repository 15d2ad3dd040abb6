"""The prebuilt challenge page is byte for byte the page built from scratch,
for any target (plain ones take the template, others the general builder)."""

from __future__ import annotations

import random
import string

import pytest

from shieldwall.guard import _responses as responses

ALPHABET = string.ascii_letters + string.digits + "_.~/?=&-%<>\"' é#+;"


@pytest.mark.parametrize("nojs,note", [(5.0, ""), (None, ""), (3.2, "That check <expired>.")])
def test_the_prebuilt_page_is_the_page_built_from_scratch(nojs: float | None, note: str) -> None:
    pages = responses.ChallengePages("/.shieldwall/verify")
    rng = random.Random(7)
    for _ in range(2000):
        target = "/" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        token = "".join(rng.choice(string.ascii_letters + "_-.") for _ in range(60))
        bits = rng.choice((8, 14, 18))
        assert pages.page(token, bits, target, nojs, note) == responses.challenge_page(
            token, bits, target, "/.shieldwall/verify", nojs, note), target


def test_a_plain_target_is_served_from_the_template() -> None:
    pages = responses.ChallengePages("/.shieldwall/verify")
    pages.page("abc.def", 14, "/shop?item=7&x=1", 5.0)
    assert list(pages._templates) == [(14, 5.0, "")]
    pages.page("abc.def", 14, "/shop\u00e9", 5.0)  # not plain: built from scratch
    assert list(pages._templates) == [(14, 5.0, "")]


def test_the_shields_tokens_are_of_the_plain_alphabet_the_template_assumes() -> None:
    from shieldwall.guard._tokens import Signer

    signer = Signer(b"k" * 32, "challenge")
    rng = random.Random(3)
    for _ in range(500):
        fields = ["1", f"10.{rng.randint(0, 255)}.0.0/24", "1700000000.123", "14",
                  hex(rng.getrandbits(48))]
        assert responses._PLAIN_TOKEN.fullmatch(signer.sign(*fields))
