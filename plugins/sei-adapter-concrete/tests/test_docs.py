"""docs/concrete.md documents every option of the adapter with its default."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from sei_adapter_concrete.adapter import ConcreteOptions

DOC = Path(__file__).resolve().parents[3] / "docs" / "concrete.md"


def test_every_option_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]*) \|", DOC.read_text(), flags=re.MULTILINE))
    expected = {}
    for name, field in ConcreteOptions.model_fields.items():
        default = field.default
        expected[name] = "required" if default is PydanticUndefined else "none" if default is None else f"`{default!r}`"
    assert {name: rows.get(name, "").strip() for name in expected} == expected
