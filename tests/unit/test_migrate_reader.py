"""The migrate package's reader and parsing: typed, path-aware, nothing read goes unreported."""

from __future__ import annotations

import pytest

from titus_flow.migrate import MAX_INPUT_BYTES, detect_source, parse_document, source_named
from titus_flow.migrate.reader import Reader
from titus_flow.migrate.report import NO_COUNTERPART, Dropped, MigrateInputError


def test_getters_check_types_and_name_the_path() -> None:
    reader = Reader({"a": {"size": "12", "cpu": 1.5, "on": True, "name": 3}})
    child = reader.child("a")
    assert child is not None
    assert child.integer("size") == 12  # proto3 JSON: uint64 as a string
    assert child.number("cpu") == 1.5
    assert child.flag("on") is True
    with pytest.raises(MigrateInputError) as caught:
        child.text("name")
    assert caught.value.path == "a.name"
    assert "expected a string" in str(caught.value)


@pytest.mark.parametrize("value", [True, "12x", [1], {"a": 1}, "1e400", 1.5])
def test_integer_refuses_what_is_not_one(value: object) -> None:
    with pytest.raises(MigrateInputError, match=r"^n: expected an integer"):
        Reader({"n": value}).integer("n")


def test_nested_lists_name_their_index() -> None:
    reader = Reader({"items": [{"x": 1}, {"x": "no"}]})
    first, second = reader.children("items")
    assert first.integer("x") == 1
    with pytest.raises(MigrateInputError) as caught:
        second.flag("x")
    assert caught.value.path == "items[1].x"


def test_unread_and_dropped_fields_are_reported() -> None:
    reader = Reader({"kept": 1, "left": "x", "empty": {}, "nested": {"kept": 1, "left": 2}})
    reader.integer("kept")
    nested = reader.child("nested")
    assert nested is not None
    nested.integer("kept")
    reader.drop("gone", "not there: nothing reported")
    nested.drop_path("nested.left", "known, not carried")
    assert reader.report() == [
        Dropped("left", NO_COUNTERPART),
        Dropped("nested.left", "known, not carried"),
        Dropped("nested.left", NO_COUNTERPART),
    ]


def test_oneof_refuses_unknown_and_several_keys() -> None:
    assert Reader({"delayed": {}}).oneof({"immediate", "delayed"}) == "delayed"
    with pytest.raises(MigrateInputError, match=r"^p\.bogus: unknown key: expected one of"):
        Reader({"bogus": {}}, "p").oneof({"immediate", "delayed"})
    with pytest.raises(MigrateInputError, match="exclusive"):
        Reader({"immediate": {}, "delayed": {}}).oneof({"immediate", "delayed"})
    with pytest.raises(MigrateInputError, match="missing: set one of"):
        Reader({}).required_oneof({"immediate"})


def test_parse_refuses_large_documents_aliases_and_non_mappings() -> None:
    with pytest.raises(MigrateInputError, match="over 1048576 bytes"):
        parse_document(b" " * (MAX_INPUT_BYTES + 1))
    with pytest.raises(MigrateInputError, match="aliases"):
        parse_document(b"a: &x [1]\nb: *x\n")
    with pytest.raises(MigrateInputError, match="a mapping"):
        parse_document(b"[1, 2]")
    with pytest.raises(MigrateInputError, match=r"nested too deeply|invalid"):
        parse_document(b"[" * 200_000)
    assert parse_document(b'{"a": 1}') == {"a": 1}


def test_detect_source_by_shape() -> None:
    assert detect_source({"applicationName": "a", "container": {}}).name == "titus"
    assert detect_source({"jobDefinitionName": "a"}).name == "aws-batch"
    assert detect_source({"apiVersion": "batch/v1", "kind": "Job"}).name == "k8s"
    with pytest.raises(MigrateInputError, match="--from"):
        detect_source({"something": "else"})
    with pytest.raises(MigrateInputError, match="unknown source"):
        source_named("mesos")
