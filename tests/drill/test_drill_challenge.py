"""Solving the challenge page as a browser does."""

from __future__ import annotations

import hashlib
import json

from shieldwall.drill import challenge


def _page(data: dict[str, object]) -> bytes:
    content = json.dumps(data).replace('"', "&quot;")
    return f'<html><head><meta name="shieldwall-challenge" content="{content}"></head></html>'.encode()


def test_the_meta_tag_is_found_and_parsed() -> None:
    c = challenge.find(_page({"challenge": "abc", "difficulty": 8, "verify": "/.shieldwall/verify",
                              "redirect": "/product/3?x=1"}))
    assert c == challenge.Challenge("abc", 8, "/.shieldwall/verify", "/product/3?x=1")
    assert c.verify_target(42) == "/.shieldwall/verify?c=abc&n=42&r=%2Fproduct%2F3%3Fx%3D1"


def test_pages_without_the_tag_are_not_challenges() -> None:
    assert challenge.find(b"<html><meta name=description content=x></html>") is None
    assert challenge.find(b'<meta name="shieldwall-challenge" content="not json">') is None


def test_the_solution_is_the_smallest_nonce_with_enough_zero_bits() -> None:
    for difficulty in (0, 4, 9, 12):
        n = challenge.solve("seed-1", difficulty)
        def bits(i: int) -> int:
            return challenge.leading_zero_bits(hashlib.sha256(f"seed-1:{i}".encode()).digest())
        assert bits(n) >= difficulty
        assert all(bits(i) < difficulty for i in range(n))


def test_leading_zero_bits() -> None:
    assert challenge.leading_zero_bits(b"\x00\x00\x10" + bytes(29)) == 19
    assert challenge.leading_zero_bits(b"\x80" + bytes(31)) == 0
