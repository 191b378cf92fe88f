"""The checks' pass over JSON Lines finds what reading the rows finds: rows, keys, a bad byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from close_async._tools import jsonl_scan
from close_async._tools.jsonl_scan import scan_jsonl
from close_async._tools.rows import ENCODING_ERROR, read_rows

from .test_import_codegen import _JSON, _RAW

_ANY_KEYS = st.sampled_from(["lead_id", "note", "vaule", "custom.cf_a", "cf_b", "x", "é"])
_TEXT = st.lists(
    st.one_of(
        st.dictionaries(_ANY_KEYS, _JSON, max_size=4).map(json.dumps),
        st.dictionaries(_ANY_KEYS, _JSON, max_size=4).map(
            lambda d: json.dumps(d, ensure_ascii=False)
        ),
        _RAW,
        st.sampled_from(['{"note": "caf\udce9"}', '{"note": "a\\u0000", "x": 1}', '{"y": "\x00"}']),
    ),
    max_size=12,
)


def _expected(path: Path) -> tuple[int, int, Any, dict[Any, int]]:
    rows = last = 0
    keys: dict[Any, int] = {}
    for row in read_rows(path, items=False, digest=None):
        rows, last = rows + 1, row.line
        if row.error is not None and row.error.reason.startswith(ENCODING_ERROR):
            return rows, last, (row.line, str(row.error)), keys
        if isinstance(row.item, dict):
            for key in row.item:
                keys.setdefault(key, row.line)
    return rows, last, None, keys


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT, st.sampled_from([16, 1]))
def test_scan_jsonl_finds_the_rows_and_keys_reading_the_rows_finds(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], shapes: int
) -> None:
    path = tmp_path_factory.mktemp("scan") / "rows.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonl_scan, "_MAX_SHAPES", shapes)
        rows, last, bad, keys = scan_jsonl(path, "utf-8-sig")
    found = None if bad is None else (bad.line, str(bad.error))
    assert (rows, last, found, keys) == _expected(path)


@pytest.mark.parametrize("key", ['a"b', "a\\b", "a\nb", "custom.cf_\x00", "custom.cf_\x1f"])
def test_a_key_msgspec_cannot_name_a_field_is_found_not_raised(tmp_path: Path, key: str) -> None:
    # msgspec renames no field to a name with '"', '\\' or a control character: the known-keys
    # decoder leaves such a key out (it raised ValueError: check_input's traceback)
    path = tmp_path / "rows.jsonl"
    line = json.dumps({"note": "a", key: 1})
    path.write_text(f'{{"note": "a"}}\n{line}\n{line}\n{{"x": 2}}\n', encoding="utf-8")
    assert scan_jsonl(path, "utf-8") == (4, 4, None, {"note": 1, key: 2, "x": 4})
