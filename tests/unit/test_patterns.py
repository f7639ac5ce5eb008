"""Each pattern ds01d.patterns matches by hand answers as re.search does, with ``$`` the end of
the text (as in JSON Schema), not also before a final newline."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ds01d.patterns import CHECKS

ALPHABETS = {
    "^[a-z0-9][a-z0-9_.-]{0,62}$": "az09_.-A/\n ",
    "^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$": "aZ09_.@-/\n ",
    "^[A-Za-z0-9][A-Za-z0-9._/:@-]*$": "aZ09._/:@- \n!",
    "^[1-7]g\\.[0-9]+gb(\\+me|\\+gfx|\\+me\\.all)?$": "0178g.b+mefxal\n",
    "^[0-9]{1,16}(\\.[0-9]{1,6})?[kKmMgGtT]?$": "0189.kKgGtTxb\n",
}


@pytest.mark.parametrize("pattern", list(CHECKS))
@settings(max_examples=3000)
@given(data=st.data())
def test_the_check_answers_as_re_does(pattern: str, data: st.DataObject) -> None:
    alphabet = ALPHABETS.get(pattern, "0129-T :.Z+\n")
    text = data.draw(st.text(alphabet=alphabet, max_size=30)
                     | st.sampled_from(_SAMPLES.get(pattern, [""])))
    strict = re.search(pattern, text) is not None and not text.endswith("\n")
    assert CHECKS[pattern](text) == strict, repr(text)


_SAMPLES = {
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?"
    "(Z|[+-][0-9]{2}:?[0-9]{2})?)?$": [
        "2026-06-30", "2026-06-30T18:00", "2026-06-30T18:00:00Z", "2026-06-30 18:00:00.5+0100",
        "2026-06-30T18:00:00.123-01:30", "2026-06-30T18:00:00+01:3", "2026-06-30T18:00Z\n",
        "2026-06-30T18:00:0", "2026-06-30T18:00:00.", "9999-12-31\n", "2026-06-30T18:00+0100"],
    "^[1-7]g\\.[0-9]+gb(\\+me|\\+gfx|\\+me\\.all)?$": ["3g.20gb", "1g.10gb+me", "7g.80gb+me.all",
                                                       "1g.gb", "8g.1gb", "3g.20gb\n"],
}
