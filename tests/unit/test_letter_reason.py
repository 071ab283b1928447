"""A dead letter's reason withholds what it quotes of the record (it is logged, stored in
plaintext and outlives the record's retention), and keeps its own words."""
from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from switchyard.privacy import letter_reason

RECORD = json.dumps({"kind": "Call Mr Bartholomew Quist", "deadline": "DOB 1961-08-19",
                     "metadata": {"Quist GB94BARC10201530093459": "x"}}).encode()


def test_quotes_of_the_record_are_withheld_with_their_length() -> None:
    assert letter_reason("kind: not a task kind 'Call Mr Bartholomew Quist': 1-63 letters",
                         RECORD) == "kind: not a task kind [withheld: 25 characters]: 1-63 letters"
    assert letter_reason("metadata['Quist GB94BARC10201530093459']: at most 1024", RECORD) == \
        "metadata[[withheld: 28 characters]]: at most 1024"


def test_the_reasons_own_words_stay() -> None:
    # a quote that is not the record's, an apostrophe in prose, a one-letter example
    for reason in ("deadline: needs a UTC offset (e.g. 'Z')", "the tenant's kind isn't 'abc'",
                   "kind: one of 'invoice', 'ticket'"):
        assert letter_reason(reason, RECORD) == reason


def test_what_the_detectors_find_is_redacted_unquoted_too() -> None:
    reason = letter_reason("bad header from ops@example.org", b"\x00\x01")
    assert "ops@example.org" not in reason and "[EMAIL REDACTED]" in reason


@given(st.text(st.characters(blacklist_characters="'\"\n\\", blacklist_categories=("Cs",)),
               min_size=3, max_size=80),
       st.sampled_from(["kind: not a task kind {}: a name", "metadata[{}]: too long",
                        "the tenant's field {} isn't known"]))
def test_any_quoted_value_of_the_record_is_withheld(value: str, template: str) -> None:
    record = json.dumps({"field": value}, ensure_ascii=True).encode()
    assert repr(value) not in letter_reason(template.format(repr(value)), record)
