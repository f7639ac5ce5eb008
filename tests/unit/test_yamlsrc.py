"""Any bytes in a desired-state file give data or a clear error, never a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ds01d.config.loader import load_config
from ds01d.config.want import from_yaml
from ds01d.errors import ConfigError
from ds01d.yamlsrc import MAX_BYTES, load_file, parse


def test_lines_of_keys_and_items() -> None:
    doc = parse("a:\n  b: 1\n  c:\n    - x\n    - y\n", "f.yaml")
    assert doc.data == {"a": {"b": 1, "c": ["x", "y"]}}
    assert doc.lines[("a", "b")] == 2 and doc.lines[("a", "c", 1)] == 5
    assert doc.line_of(("a", "c", 1, "deeper")) == 5


def test_a_quote_left_open_names_the_line_it_began_on() -> None:
    text = "a:\n  b: \"1600%\n  c: 2\nd:\n  e: 3\n  f: \"x\"\n"
    with pytest.raises(ConfigError) as e:
        parse(text, "f")
    assert "(reading what begins at line 2: is a quote or bracket left open there?)" \
        in str(e.value)


def test_scalars_are_json_like() -> None:
    doc = parse("d: 2026-06-30\nb: yes\nn: ~\nf: 1.5\ni: 0x10\n1: numeric key\n", "f")
    assert doc.data == {"d": "2026-06-30", "b": True, "n": None, "f": 1.5, "i": 16,
                        "1": "numeric key"}


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\na: 2\n", "f:2: key 'a' appears twice in the same mapping"),
    ("a: &x [*x]\n", "f:1: an alias refers to itself"),
    ("? [a]\n: 1\n", "f:1: a key must be a plain word"),
    ("a: .inf\n", "f:1: '.inf' is not a finite number"),
    ("a: [\n", "f:2: not valid YAML"),
    ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ("a: \x00", "contains NUL bytes"),
    ("a: !!python/object:os.system x\n", "f:1: tag 'tag:yaml.org,2002:python/object:os.system' is not allowed"),
    ("a: !custom {b: 1}\n", "f:1: tag '!custom' is not allowed"),
    ("[" * 100 + "]" * 100, "nested more than 64 levels deep"),
])
def test_refused_with_a_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, "f")
    assert message in str(err.value)


def test_billion_laughs_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(ConfigError) as err:
        parse("\n".join(lines) + "\n", "f")
    assert "more than 200000 values" in str(err.value)


def test_merge_keys_work() -> None:
    doc = parse("base: &b {max_cpus: 4}\ngroup:\n  <<: *b\n  memory: 8g\n", "f")
    assert doc.data["group"] == {"max_cpus": 4, "memory": "8g"}


def test_file_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_file(big, display="big.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml:2: not UTF-8 text"):
        load_file(latin, display="latin.yaml")
    link = tmp_path / "link.yaml"
    link.symlink_to(latin)
    with pytest.raises(ConfigError, match="is a symlink"):
        load_file(link, display="link.yaml", follow_symlinks=False)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_file(tmp_path, display="dir")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_file(fifo, display="fifo")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_resource_limits_load_or_fail_clearly(tmp_path_factory: pytest.TempPathFactory,
                                                           raw: bytes) -> None:
    etc = tmp_path_factory.mktemp("etc")
    (etc / "resource-limits.yaml").write_bytes(raw)
    try:
        load_config(etc)
    except ConfigError as e:
        assert e.errors and all(str(d).startswith("resource-limits.yaml") for d in e.errors)


yamlish = st.lists(st.sampled_from(
    ["version: 1", "kind: container", "name: t", "image: i", "gpus: 1", "mig: 1g.5gb",
     "requested_at: '2026-11-22T18:00:00Z'", "memory: 32gb", "cpus: -1", "  - x", ": :", "&a",
     "*a", "[", "{", "'", "#", "\t", "---", "name: [1]", "user: root"]), max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")),
                 yamlish.map("\n".join)))
def test_any_text_as_want_gives_a_want_or_a_clear_error(text: str) -> None:
    try:
        want = from_yaml(text, user="alice", file="w.yaml")
    except ConfigError as e:
        assert e.errors and all(str(d).startswith("w.yaml") for d in e.errors)
    else:
        assert want.user == "alice"


def test_the_parser_never_sees_what_nests_too_deeply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever libyaml's own limits (0.2.5 stops at 1000 levels; older ones recurse until the
    C stack runs out), deep nesting is refused before the parser is made."""
    import yaml

    from ds01d.yamlsrc import USER, nesting_estimate

    def no_parser(text: str) -> None:
        raise AssertionError("the parser was given a file nested too deeply")

    monkeypatch.setattr(yaml, "CSafeLoader", no_parser)
    for text in ("[" * 60_000, "- " * 30_000, "{a: " * 15_000,
                 "".join(" " * i + f"k{i}:\n" for i in range(200))):
        with pytest.raises(ConfigError, match="nested more than"):
            parse(text, "f", bounds=USER)
    assert nesting_estimate("a:\n  b: [1, {c: [2]}]\n  d: '[[['\n") <= 8
    assert nesting_estimate("[" * 100) == 101  # the line, and 100 brackets


def test_merge_keys_are_expanded_and_counted_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML's own merge expansion (flatten_mapping) was exponential before 6.0.3; ds01 never
    calls it: merge keys are expanded by the walker, each use counted against the bounds."""
    import yaml

    def refuse(self: object, node: object) -> None:
        raise AssertionError("PyYAML's flatten_mapping was used")

    monkeypatch.setattr(yaml.constructor.SafeConstructor, "flatten_mapping", refuse)
    doc = parse("base: &b {a: 1, b: 2}\nx:\n  <<: [*b, {c: 3}]\n  b: 9\n", "f")
    assert doc.data["x"] == {"a": 1, "b": 9, "c": 3}
    lines = ["a0: &a0 {k0: 0}", "b0: &b0 {j0: 0}"]
    for i in range(1, 26):
        lines.append(f"a{i}: &a{i} {{<<: [*a{i - 1}, *b{i - 1}], x{i}: 1}}")
        lines.append(f"b{i}: &b{i} {{<<: [*b{i - 1}, *a{i - 1}], y{i}: 1}}")
    with pytest.raises(ConfigError, match="more than 200000 values"):
        parse("\n".join(lines) + "\n", "f")


def test_an_old_libyaml_is_not_trusted_with_deep_nesting(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """libyaml before 0.2.5 recursed without limit (a SIGSEGV on deep nesting); there the
    pure-Python parser is used, whose recursion ends in an error ds01 reports."""
    import yaml
    from yaml import _yaml

    from ds01d import yamlsrc

    assert yamlsrc._loader() is yaml.CSafeLoader
    monkeypatch.setattr(_yaml, "get_version", lambda: (0, 2, 2))
    assert yamlsrc._loader() is yaml.SafeLoader
    assert parse("a: [1, {b: 2}]\n", "f").data == {"a": [1, {"b": 2}]}
    deep = "x:\n" + "".join("  " * (i + 1) + f"- k{i}:\n" for i in range(40))
    with pytest.raises(ConfigError, match="nested more than"):
        parse(deep, "f")
