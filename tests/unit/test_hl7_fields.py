"""HL7 v2 fields by position (``switchyard.packs.hl7_fields``): what the labels extractor reads
and where the review service's masking finds a withheld field. Fuzzed: any text (a reviewer's
copy of any document goes through it) gives spans inside the text, and the span of a field
is what the message writes for it."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from switchyard.packs import hl7_field_around, hl7_fields, is_hl7_position

MESSAGE = "\r\n".join([
    "MSH|^~\\&|LAB|GH|EHR|GH|202611051230||ADT^A04|M1|P|2.5",
    "PID|1||A1^^^GH~B2^^^SSA||O\\S\\Brien^Nuala^^^Dr||19740315|F",
    "PID|2||SECOND",              # a second segment of a type is not read
    "ZZZ|x|\\F\\pipe\\T\\amp\\E\\slash",
])


def test_fields_and_components_are_read_with_their_spans_as_written() -> None:
    fields = {f.position: f for f in hl7_fields(MESSAGE)}
    name = fields["PID-5"]
    assert name.value == "O^Brien Nuala Dr"
    assert MESSAGE[name.start:name.end] == "O\\S\\Brien^Nuala^^^Dr"
    assert MESSAGE[fields["PID-5.2"].start:fields["PID-5.2"].end] == "Nuala"
    ids = fields["PID-3"]                       # the first repetition only
    assert (ids.value, MESSAGE[ids.start:ids.end]) == ("A1 GH", "A1^^^GH")
    assert fields["PID-1"].value == "1"         # the first PID, not the second
    assert fields["MSH-9"].value == "ADT A04" and fields["MSH-3"].value == "LAB"
    assert fields["ZZZ-2"].value == "|pipe&amp\\slash"
    assert "PID-4" not in fields                # empty fields are not listed
    assert is_hl7_position("PID-5") and is_hl7_position("IN1-4.1")
    assert not is_hl7_position("Sex") and not is_hl7_position("PID-")


def test_text_that_is_no_hl7_message_has_no_fields() -> None:
    for text in ("", "MSH", "MSH|^~", "Patient: PID-5", "MSHA^~\\&|x", "MSH ^~\\&|x",
                 "{\"MSH\": 1}"):
        assert hl7_fields(text) == [], text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("MSHPID|^~\\&\r\n 0123ABCFSTRE.-"), max_size=200),
       st.sampled_from(["MSH|^~\\&|", "MSH#^~\\&#", ""]))
def test_any_text_gives_spans_inside_it(tail: str, head: str) -> None:
    text = head + tail
    for field in hl7_fields(text):
        assert 0 <= field.start < field.end <= len(text)
        assert field.value and field.value == field.value.strip()
        assert "\r" not in text[field.start:field.end] and "\n" not in text[field.start:field.end]
        assert is_hl7_position(field.position)


def test_the_field_around_a_span_is_the_whole_field_with_its_repetitions() -> None:
    text = MESSAGE
    name = text.index("Nuala")
    start, end = hl7_field_around(text, name, name + len("Nuala"))
    assert text[start:end] == "O\\S\\Brien^Nuala^^^Dr"
    first_id = text.index("A1")
    assert text[slice(*hl7_field_around(text, first_id, first_id + 2))] == \
        "A1^^^GH~B2^^^SSA"                      # every repetition
    sex = text.index("|F") + 1                  # the segment's last field: to the line's end
    assert text[slice(*hl7_field_around(text, sex, sex + 1))] == "F"
    assert hl7_field_around(text, 0, 3) == (0, 3)          # a segment's name: no field
    across = text.index("1||A1")
    assert hl7_field_around(text, across, across + 5) == (across, across + 5)
    assert hl7_field_around("Name: Nuala", 6, 11) == (6, 11)  # no HL7 message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("MSHPID|^~\\&\r\n 0123ABC"), max_size=120),
       st.integers(0, 130), st.integers(0, 10))
def test_the_field_around_any_span_contains_it(tail: str, start: int, length: int) -> None:
    text = "MSH|^~\\&|" + tail
    start = min(start, len(text))
    end = min(start + length, len(text))
    around = hl7_field_around(text, start, end)
    assert around[0] <= start <= end <= around[1] <= len(text)
    if around != (start, end):
        assert "|" not in text[around[0]:around[1]] and "\r" not in text[around[0]:around[1]]
