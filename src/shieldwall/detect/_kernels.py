"""The Arrow compute kernels the log reader and the window counting call, bound directly.

``import pyarrow.compute`` makes a Python wrapper, with a signature and a docstring,
for every one of Arrow's several hundred kernels: 30 ms of the parsing process's
start-up (a fifth of its imports), spent before its first chunk while the analyzer
waits for that chunk. The functions here call the same kernels with the same options
as ``pyarrow.compute``'s wrappers do (no options where those pass none), through
``pyarrow._compute.call_function``, whose module is the part of that import the
kernels need (4 ms). ``tests/detect/test_detect_kernels.py`` holds each to its
``pyarrow.compute`` twin.
"""

from __future__ import annotations

from typing import Any

from pyarrow._compute import (  # type: ignore[import-untyped]
    CastOptions,
    ExtractRegexOptions,
    MatchSubstringOptions,
    SliceOptions,
    SplitPatternOptions,
    StructFieldOptions,
)
from pyarrow._compute import call_function as _call

__all__ = [
    "all_true", "any_true", "binary_join_element_wise", "cast", "coalesce", "dictionary_encode",
    "equal", "extract_regex", "if_else", "list_element", "list_value_length", "not_equal",
    "split_pattern", "starts_with", "string_is_ascii", "struct_field", "utf8_slice_codeunits",
]


def dictionary_encode(arr: Any) -> Any:
    return _call("dictionary_encode", [arr])


def binary_join_element_wise(*strings: Any) -> Any:
    """The strings joined, line by line, with the last argument between them."""
    return _call("binary_join_element_wise", list(strings))


def split_pattern(arr: Any, pattern: str, max_splits: int | None = None) -> Any:
    return _call("split_pattern", [arr], SplitPatternOptions(pattern, max_splits=max_splits))


def list_value_length(arr: Any) -> Any:
    return _call("list_value_length", [arr])


def list_element(arr: Any, index: Any) -> Any:
    return _call("list_element", [arr, index])


def extract_regex(arr: Any, pattern: str) -> Any:
    return _call("extract_regex", [arr], ExtractRegexOptions(pattern))


def struct_field(arr: Any, indices: list[int]) -> Any:
    return _call("struct_field", [arr], StructFieldOptions(indices))


def coalesce(*values: Any) -> Any:
    return _call("coalesce", list(values))


def utf8_slice_codeunits(arr: Any, start: int, stop: int | None = None) -> Any:
    return _call("utf8_slice_codeunits", [arr], SliceOptions(start, stop))


def starts_with(arr: Any, pattern: str) -> Any:
    return _call("starts_with", [arr], MatchSubstringOptions(pattern))


def string_is_ascii(arr: Any) -> Any:
    return _call("string_is_ascii", [arr])


def equal(a: Any, b: Any) -> Any:
    return _call("equal", [a, b])


def not_equal(a: Any, b: Any) -> Any:
    return _call("not_equal", [a, b])


def if_else(cond: Any, a: Any, b: Any) -> Any:
    return _call("if_else", [cond, a, b])


def all_true(arr: Any) -> Any:
    """``pyarrow.compute.all``: whether every (non-null) value is true."""
    return _call("all", [arr])


def any_true(arr: Any) -> Any:
    """``pyarrow.compute.any``."""
    return _call("any", [arr])


def cast(arr: Any, target_type: Any) -> Any:
    """A safe cast, as ``pyarrow.compute.cast`` makes by default."""
    return _call("cast", [arr], CastOptions.safe(target_type))
