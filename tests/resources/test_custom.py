"""The custom-field model and decoder are generic: a model that is not an Opportunity (here a
``Note``, shaped like a lead) gets the same one-pass decode, ``.custom``, typed custom fields,
pickling and copying, with nothing shared with the Opportunity decoder."""

from __future__ import annotations

import copy
import datetime as dt
import pickle
from pathlib import Path

import msgspec
import pytest

from close_async import DecodeError, decode_opportunity
from close_async._resources.custom import CustomDecoder, CustomFieldsModel, share
from tests.support.typing import run_mypy

UTC = dt.timezone.utc


class Note(CustomFieldsModel, kw_only=True):
    id: str = ""
    text: str | None = None
    date_created: dt.datetime | None = None


class TaggedNote(Note, kw_only=True):
    tag: str = msgspec.field(default="none", name="custom.cf_tag")


_decoder = CustomDecoder(Note)
share(_decoder)
decode_note = _decoder.decode


def _payload(**extra: object) -> bytes:
    body = {"id": "note_1", "text": "hi", "date_created": "2024-01-02T03:04:05+00:00"}
    return msgspec.json.encode({**body, **extra})


def test_a_note_keeps_every_custom_key_in_one_pass() -> None:
    note = decode_note(_payload(**{"custom.cf_a": 1, "custom.cf_b": ["x", "y"]}))
    assert isinstance(note, Note)
    assert type(note).__name__ == "Note"
    assert (note.id, note.text) == ("note_1", "hi")
    assert note.custom == {"cf_a": 1, "cf_b": ["x", "y"]}
    # The key set is learned: the same shape again takes the fast type (no __dict__).
    again = decode_note(_payload(**{"custom.cf_a": 2, "custom.cf_b": []}))
    assert again.custom == {"cf_a": 2, "cf_b": []}
    assert not hasattr(again, "__dict__")


def test_keys_learned_for_notes_are_not_learned_for_opportunities() -> None:
    decode_note(_payload(**{"custom.cf_note_only": 1}))
    opp = decode_opportunity(b'{"id": "oppo_1"}')
    assert opp.custom == {}
    assert "cf_note_only" not in {f.name for f in msgspec.structs.fields(opp)}


def test_a_typed_custom_field_of_a_note_subclass() -> None:
    tagged = decode_note(_payload(**{"custom.cf_tag": "red", "custom.cf_z": 0}), TaggedNote)
    assert isinstance(tagged, TaggedNote)
    assert tagged.tag == "red"
    assert tagged.custom == {"cf_tag": "red", "cf_z": 0}
    untagged = decode_note(_payload(), TaggedNote)
    assert untagged.tag == "none"
    assert untagged.custom == {}


def test_a_naive_timestamp_of_a_note_is_read_as_utc() -> None:
    note = decode_note(_payload(date_created="2024-01-02T03:04:05"))
    assert note.date_created == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_note_pickles_and_copies_with_its_custom_fields() -> None:
    note = decode_note(_payload(**{"custom.cf_a": {"deep": [1]}, "custom.cf b": "odd key"}))
    for clone in (pickle.loads(pickle.dumps(note)), copy.copy(note)):
        assert isinstance(clone, Note)
        assert (clone.id, clone.text, clone.date_created) == (note.id, note.text, note.date_created)
        assert clone.custom == {"cf_a": {"deep": [1]}, "cf b": "odd key"}


def test_errors_name_the_model() -> None:
    with pytest.raises(DecodeError, match="response is not a Note: it has no id"):
        decode_note(b'{"text": "no id"}')
    with pytest.raises(DecodeError, match="response is not a Note"):
        decode_note(b"[1, 2]")


def test_a_model_without_an_id_field_is_refused_when_its_decoder_is_made() -> None:
    class Anonymous(CustomFieldsModel, kw_only=True):
        text: str = ""

    with pytest.raises(TypeError, match="Anonymous has no id field"):
        CustomDecoder(Anonymous)


TYPED_SNIPPET = """\
import msgspec
from close_async._resources.custom import CustomDecoder, CustomFieldsModel

class Note(CustomFieldsModel, kw_only=True):
    id: str = ""

class Tagged(Note, kw_only=True):
    tag: str = msgspec.field(default="", name="custom.cf_tag")

decode_note = CustomDecoder(Note).decode
reveal_type(decode_note(b"{}"))
reveal_type(decode_note(b"{}", Tagged))
"""


def test_the_decoder_of_a_model_is_typed_by_that_model(tmp_path: Path) -> None:
    revealed, errors = run_mypy(tmp_path, TYPED_SNIPPET)
    assert errors == []
    assert revealed == ['"snippet.Note"', '"snippet.Tagged"']
