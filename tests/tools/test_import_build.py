"""The import's short ways: ``build`` is ``to_create``, ``scan_csv`` is the checks' row count."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from close_async import InvalidInputError
from close_async._resources.opportunities.requests import to_create
from close_async._tools import csv_scan
from close_async._tools.csv_scan import scan_csv
from close_async._tools.import_build import build
from close_async._tools.import_codegen import compile_cells
from close_async._tools.preflight import check_input
from close_async._tools.rows import ENCODING_ERROR, _csv_item, _plan, read_rows

LEAD = "lead_" + "BuildTests".ljust(43, "0")

_KEYS = st.sampled_from(
    [
        "lead_id",
        "status_id",
        "contact_id",
        "user_id",
        "created_by",
        "note",
        "value",
        "confidence",
        "value_period",
        "date_won",
        "date_created",
        "attachments",
        "custom_fields",
        "custom",
        "custom.cf_tier",
        "custom.cf_products",
        "custom.cf_",
        "custom.tier",
        "cf_tier",
        "vaule",
    ]
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=200),
    st.sampled_from(["", "x", "monthly", "annual", "one_time", "2026-12-01", LEAD]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_VALUE = st.one_of(
    _SCALAR,
    st.lists(_SCALAR, max_size=3),
    st.dictionaries(st.sampled_from(["cf_a", "url", "filename"]), _SCALAR, max_size=2),
    st.lists(st.dictionaries(st.sampled_from(["url", "filename"]), _SCALAR), max_size=2),
)


def outcome(make: Any, item: dict[str, Any]) -> Any:
    try:
        return ("built", make(item))
    except Exception as exc:
        return ("raised", type(exc), str(exc))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _VALUE, max_size=6))
def test_build_gives_what_to_create_gives_for_any_wire_dict(item: dict[str, Any]) -> None:
    assert _same(outcome(build, item), outcome(to_create, item))


def _same(a: Any, b: Any) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "raised":
        return bool(a[1:] == b[1:])
    # NaN inside a value makes == false for both: compare the encoded forms instead
    return repr(a[1]) == repr(b[1]) and (a[1] == b[1] or "nan" in repr(a[1]))


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"lead_id": ""}, "lead_id"),
        ({"lead_id": 5}, "lead_id"),
        ({"value": True}, "value"),
        ({"value": "5"}, "value"),
        ({"confidence": 101}, "confidence"),
        ({"confidence": -1}, "confidence"),
        ({"value_period": "weekly"}, "value_period"),
        ({"note": 3}, "note"),
        ({"custom.cf_x": [math.nan]}, "custom.cf_x"),
        ({"custom.cf_": "a"}, "custom"),
        ({"vaule": 5}, "vaule"),
    ],
)
def test_build_names_the_field_and_value_of_a_bad_row(item: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build(item)
    assert caught.value.field == field


def test_build_gives_every_row_its_own_custom_dict() -> None:
    a, b = build({"lead_id": LEAD}), build({"lead_id": LEAD})
    a.custom["cf_x"] = 1
    assert b.custom == {}
    assert build({"custom.cf_x": 2}).custom == {"cf_x": 2}


def _csv(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "rows.csv"
    path.write_bytes(text.encode(encoding, errors="surrogateescape"))
    return path


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lead_id,note\n",
        "lead_id,note\nlead_a,x\n\n,\n , \nlead_b,y\n\n",
        'lead_id,note\nlead_a,"two\nlines"\nlead_b,"three\n\nlines"\n,\n',
        "lead_id,note\r\nlead_a,x\r\nlead_b,caf\u00e9\r\n",
        "lead_id,note\nlead_a,x\x00y\n",
        "lead_id,note\nlead_a,x\nlead_b,caf\udce9\nlead_c,z\n",
        "lead_id,note\nlead_a," + "x" * 140_000 + "\nlead_b,y\n",
        'lead_id,note\nlead_a,"' + "x" * 140_000 + '"\nlead_b,y\n',
    ],
)
def test_scan_csv_counts_and_finds_what_reading_the_rows_does(tmp_path: Path, text: str) -> None:
    path = _csv(tmp_path, text)
    rows = list(read_rows(path, items=False, digest=None))
    bad = next((r for r in rows if r.error and r.error.reason.startswith(ENCODING_ERROR)), None)
    count, last, found = scan_csv(path, "utf-8-sig")
    if bad is None:
        assert (count, last, found) == (len(rows), rows[-1].line if rows else 0, None)
    else:
        upto = rows[: rows.index(bad) + 1]
        assert (count, last) == (len(upto), bad.line)
        assert found is not None
        assert (found.line, str(found.error)) == (bad.line, str(bad.error))


_COLUMNS = st.lists(
    st.sampled_from(
        [
            "lead_id",
            "note",
            "value",
            "confidence",
            "value_period",
            "custom.cf_tier",
            "custom.cf_products",
            "custom.cf_",
            "custom.tier",
            "date_won",
            "attachments",
            "custom",
            "vaule",
        ]
    ),
    min_size=1,
    max_size=6,
)
_CELL = st.sampled_from(
    ["", " ", "x", LEAD, "5", " 7 ", "-3", "101", "1_000", "abc", "monthly", "weekly",
     '["CRM"]', '["CRM", {"a": 1}]', "[1.5e999]", "[nope", "[", "2026-12-01", '{"a": 1}']
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(_COLUMNS, st.lists(_CELL, max_size=7))
def test_a_csv_row_built_from_its_cells_is_what_its_dict_gives(
    columns: list[str], cells: list[str]
) -> None:
    built = compile_cells(columns)(cells)
    try:
        expected = to_create(_csv_item(_plan(columns), cells))
    except (InvalidInputError, TypeError, ValueError):
        assert built is None  # the dict's way says what is wrong
        return
    assert built is None or (built == expected and repr(built) == repr(expected))


def test_the_usual_csv_row_is_built_from_its_cells(tmp_path: Path) -> None:
    path = _csv(tmp_path, f'lead_id,value,confidence,custom.cf_p,note\n{LEAD},5, 7 ,"[""a""]",x\n')
    [row] = read_rows(path, creates=True)
    assert row.item == to_create({"lead_id": LEAD, "value": 5, "confidence": 7, "note": "x",
                                  "custom.cf_p": ["a"]})  # fmt: skip
    [row] = read_rows(path)
    assert isinstance(row.item, dict)


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "a",
                "b,c",
                ",",
                " ",
                "\n",
                "\r\n",
                "\r",
                "\u00a0",
                "\x0c",
                "\u2028",
                "\u00e9",
                "\x1f",
                '"',
                '"x\ny"',
                '""',
                '"a,b"',
                '",',
                ',"',
                "\x01",
                "\udce9",
                "\x00",
            ]
        ),
        max_size=40,
    ),
    st.sampled_from([3, 7, 1 << 16]),
)
def test_scan_csv_counts_any_text_as_reading_its_rows_does(
    tmp_path_factory: pytest.TempPathFactory, parts: list[str], chunk: int
) -> None:
    path = _csv(tmp_path_factory.mktemp("scan"), "".join(parts))
    rows = list(read_rows(path, items=False, digest=None))
    bad = next((r for r in rows if r.error and r.error.reason.startswith(ENCODING_ERROR)), None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_scan, "_CHUNK", chunk)
        count, last, found = scan_csv(path, "utf-8-sig")
    if bad is None:
        assert (count, last, found) == (len(rows), rows[-1].line if rows else 0, None)
    else:
        assert found is not None
        assert (found.line, str(found.error)) == (bad.line, str(bad.error))


@pytest.mark.parametrize(
    "ns", [0, 999_999_999, 1_764_633_600_123_456_789, 1_764_633_601_000_000_000, 1_764_633_601_5]
)
def test_sent_at_now_is_the_isoformat_of_now_in_milliseconds(
    monkeypatch: pytest.MonkeyPatch, ns: int
) -> None:
    import datetime as dt

    from close_async._tools import import_reconcile

    monkeypatch.setattr(import_reconcile.time, "time_ns", lambda: ns)
    second = dt.datetime.fromtimestamp(ns // 10**9, dt.timezone.utc)
    expected = second + dt.timedelta(milliseconds=ns // 10**6 % 1000)
    assert import_reconcile.sent_at_now() == expected.isoformat(timespec="milliseconds")


def test_a_long_line_ending_in_a_later_read_goes_to_the_csv_module(tmp_path: Path) -> None:
    # A blank cell over csv's 131,072-character field limit is an error row for the csv module,
    # and so a row. Its line began 2 characters before a 64 KiB read ended and ended in the read
    # after next: each read's unfinished tail was short, but the line was not.
    path = tmp_path / "in.csv"
    header = "note" + " " * (65534 - 1 - 4)
    path.write_text(header + "\n" + " " * 131_073 + "\n", encoding="utf-8")
    old = sum(1 for _ in read_rows(path, "utf-8-sig", items=False, digest=None))
    assert old == 1
    assert check_input(path) == old
