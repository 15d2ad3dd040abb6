"""detect/_kernels: each kernel call gives what its ``pyarrow.compute`` twin gives, and
the log reader runs without importing ``pyarrow.compute`` (its wrappers' build)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from shieldwall.detect import _kernels as k

DATA = Path(__file__).resolve().parents[1] / "data"


def test_each_kernel_is_its_pyarrow_compute_twin() -> None:
    s = pa.array(["GET /a?x=1 HTTP/1.1", "GET /b HTTP/1.0", "-", "POST  /c HTTP/1.1", "ö é"])
    words = pc.split_pattern(s, " ")
    two_words = pc.split_pattern(pa.array(["GET /a", "GET /b?q=1 HTTP/1.1"]), " ")
    one, zero = pa.scalar(1, pa.int32()), pa.scalar(0, pa.int32())
    dash, empty = pa.scalar("-", pa.string()), pa.scalar("", pa.string())
    nums = pa.array(["1", "-", "30"])
    flags = pa.array([True, False, None])
    pairs = [
        (k.dictionary_encode(s), pc.dictionary_encode(s)),
        (k.binary_join_element_wise(s, s, empty), pc.binary_join_element_wise(s, s, empty)),
        (k.split_pattern(s, " "), words),
        (k.split_pattern(s, "?", max_splits=1), pc.split_pattern(s, "?", max_splits=1)),
        (k.list_value_length(words), pc.list_value_length(words)),
        (k.list_element(two_words, one), pc.list_element(two_words, one)),
        (k.list_element(words, zero), pc.list_element(words, zero)),
        (k.extract_regex(s, r"(?s)^[^ ]* (?P<t>.*) [^ ]*$"),
         pc.extract_regex(s, r"(?s)^[^ ]* (?P<t>.*) [^ ]*$")),
        (k.coalesce(pa.array([None, "a"]), empty), pc.coalesce(pa.array([None, "a"]), empty)),
        (k.utf8_slice_codeunits(s, 0, -1), pc.utf8_slice_codeunits(s, 0, -1)),
        (k.utf8_slice_codeunits(s, 3), pc.utf8_slice_codeunits(s, 3)),
        (k.starts_with(s, "GET"), pc.starts_with(s, "GET")),
        (k.string_is_ascii(s), pc.string_is_ascii(s)),
        (k.equal(s, dash), pc.equal(s, dash)),
        (k.not_equal(s, dash), pc.not_equal(s, dash)),
        (k.if_else(pc.equal(nums, dash), pa.scalar("0"), nums),
         pc.if_else(pc.equal(nums, dash), pa.scalar("0"), nums)),
        (k.all_true(flags), pc.all(flags)),
        (k.any_true(flags), pc.any(flags)),
        (k.cast(pa.array(["1", "22"]), pa.int64()), pc.cast(pa.array(["1", "22"]), pa.int64())),
    ]
    struct = pc.extract_regex(s, r"(?P<t>\S+)")
    pairs.append((k.struct_field(struct, [0]), pc.struct_field(struct, [0])))
    for got, want in pairs:
        assert got.equals(want), (got, want)
    try:
        k.cast(pa.array(["x"]), pa.int64())
    except pa.ArrowInvalid:
        pass
    else:
        raise AssertionError("a cast that loses the value must fail, as pyarrow.compute's does")


def test_the_log_reader_never_imports_pyarrow_compute() -> None:
    code = ("import sys\nfrom pathlib import Path\n"
            "from shieldwall.detect.readers import ReadStats, _column_parts\n"
            "from shieldwall.detect.columns import BuilderArgs\n"
            "from shieldwall.detect.windows import WindowBuilder\n"
            "b = WindowBuilder(lateness=2.0)\n"
            "parts = list(_column_parts(Path(sys.argv[1]), 'auto', ReadStats(), (2.0, BuilderArgs(b))))\n"
            "assert parts\n"
            "print('pyarrow.compute' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(DATA / "real-apache-2015.log")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert res.stdout.strip() == "False"
