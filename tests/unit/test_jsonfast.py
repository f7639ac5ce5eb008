"""ds01d.jsonfast reads exactly what json.loads reads, without importing json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ds01d.jsonfast import loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=1000)
@given(values, st.sampled_from([None, 1, 2]), st.sampled_from(["", " ", "\n\t "]))
def test_what_json_writes_is_read_back(value: object, indent: int | None, pad: str) -> None:
    text = pad + json.dumps(value, indent=indent) + pad
    assert loads(text) == json.loads(text)


@settings(max_examples=3000)
@given(st.text(alphabet='{}[]",:0123456789.eE+-truefalsn \t\n\\u', max_size=40))
def test_any_text_reads_as_json_does(text: str) -> None:
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        with pytest.raises(ValueError):
            loads(text)
        return
    assert loads(text) == expected


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", "-Infinity", "", "  ", "1 2", "[" * 100_000])
def test_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_it_imports_neither_json_nor_re() -> None:
    code = ("import sys; from ds01d.jsonfast import loads; assert loads('{\"a\": [1]}') == "
            "{'a': [1]}; print(sorted(m for m in ('json', 're') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
