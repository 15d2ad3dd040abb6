"""Config: strict, typed, every problem named with its key path, the bad value
and what would be accepted; check-config exits 0 or 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from shieldwall.config import Config, ConfigError, build_config, cli_overrides, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shieldwall.toml"


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.problems


def test_every_problem_is_listed_with_key_path_value_and_what_is_accepted(tmp_path: Path) -> None:
    got = problems(
        'workers = "x"\nlisten = "bad"\n'
        '[[backends]]\nurl = "http://127.0.0.1:9001"\n'
        '[[backends]]\nurl = "ftp://x"\nweight = 0\n'
        "[limits]\nmax_conections = 3\n"
        "[timeouts]\nidle = -1\n"
        'trusted_proxies = ["10.0.0.0/33"]\n',
        tmp_path,
    )
    assert got == [
        "listen: 'bad' is not accepted; expected host:port, like 127.0.0.1:8080",
        "workers: 'x' is not accepted; expected an integer",
        "backends[1].url: 'ftp://x' is not accepted; expected an http:// URL with host and port, "
        "like http://127.0.0.1:9001",
        "backends[1].weight: 0 is not accepted; expected a number >= 1",
        "limits.max_conections: unknown key; accepted keys here: max_body_bytes, max_connections, "
        "max_connections_per_client, max_header_bytes, max_headers, max_request_line",
        "timeouts.idle: -1 is not accepted; expected a number > 0",
        "timeouts.trusted_proxies: unknown key; accepted keys here: body_grace, drain, header, idle, "
        "min_body_rate, send, upstream_connect, upstream_response",
    ]


def test_missing_backends_and_bad_cidr_and_half_tls(tmp_path: Path) -> None:
    got = problems('trusted_proxies = ["10.0.0.0/33"]\n[tls]\ncert = "x.pem"\n', tmp_path)
    assert got == [
        "trusted_proxies: ['10.0.0.0/33'] is not accepted; expected CIDRs like 10.0.0.0/8 "
        "or ::1/128, got '10.0.0.0/33'",
        "backends: missing; expected at least one [[backends]] table with a url",
        "tls: {'cert': 'x.pem'} is not accepted; expected both cert and key (PEM file paths), "
        "or neither",
    ]


def test_unreadable_and_malformed_files_are_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.toml")
    assert exc.value.problems == [f"{tmp_path / 'nope.toml'}: cannot read the file (No such file or directory)"]
    got = problems("[x\n", tmp_path)
    assert got == [f"{tmp_path / 'c.toml'}: not valid TOML: Expected ']' at the end of a table "
                   "declaration (at line 1, column 3)"]


def test_cli_flags_are_the_config_fields_of_the_same_names() -> None:
    config = build_config(cli_overrides("127.0.0.1:0", ["http://127.0.0.1:1", "http://127.0.0.1:2"],
                                        "127.0.0.1:0", 3))
    assert config.listen == "127.0.0.1:0"
    assert [b.url for b in config.backends] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert config.admin.listen == "127.0.0.1:0"
    assert config.workers == 3


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('listen = "127.0.0.1:1"\n[[backends]]\nurl = "http://127.0.0.1:9"\n')
    config = load_config(path, cli_overrides(listen="127.0.0.1:2"))
    assert config.listen == "127.0.0.1:2"
    assert config.backends[0].key == "127.0.0.1:9"


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else (
            args[0] if args and isinstance(args[0], type) and issubclass(args[0], BaseModel) else None)
        if sub is not None:
            out += _fields(sub, prefix + name + ".")
    return out


def test_the_example_validates_and_documents_every_key() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, Config)
    text = EXAMPLE.read_text()
    tables = {m.group(1) for m in re.finditer(r"^\[\[?([\w.]+)\]\]?", text, re.M)}
    keys: set[str] = set()
    table = ""
    for line in text.splitlines():
        m = re.match(r"^\[\[?([\w.]+)\]\]?", line)
        if m:
            table = m.group(1)
            continue
        m = re.match(r"^(?:# )?(\w+) = ", line)  # "# key = ..." documents an optional key
        if m:
            keys.add(f"{table}.{m.group(1)}" if table else m.group(1))
    # Every key of every section, the guard's and the detector's included.
    for field in _fields(Config):
        assert field in keys or field in tables, f"examples/shieldwall.toml does not document {field}"
    assert {"guard", "detect"} <= tables
    # every documented key has a comment line somewhere above it
    assert text.count("\n#") > 40


def test_check_config_exit_codes_and_messages(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "shieldwall.cli", "check-config", str(EXAMPLE)],
                        capture_output=True, text=True)
    assert ok.returncode == 0
    assert ok.stdout == (f"ok: {EXAMPLE}: listen 127.0.0.1:8080, 2 backend(s) (127.0.0.1:9001, "
                         "127.0.0.1:9002), 1 worker(s), admin 127.0.0.1:9180\n")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[backends]]\nurl = "http://x:1"\n[[backends]]\nurl = "nope"\n[cache]\nmax_bytes = "a lot"\n')
    out = subprocess.run([sys.executable, "-m", "shieldwall.cli", "check-config", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{bad}: 2 problem(s)",
        "backends[1].url: 'nope' is not accepted; expected an http:// URL with host and port, "
        "like http://127.0.0.1:9001",
        "cache.max_bytes: 'a lot' is not accepted; expected an integer",
    ]
