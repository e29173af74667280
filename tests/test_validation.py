"""One formatting of pydantic errors for configs, manifests and request data: paths, never values."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError

from sei_framework import validation_problems
from sei_framework.validation import field_path

SECRET = "value-that-must-not-show"


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ciphertexts: list[StrictInt]


class Data(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[Row]


@pytest.mark.parametrize(
    "loc, prefix, path",
    [(("models", 0, "options", "alpha"), "", "models[0].options.alpha"), (("rows", 2), "data", "data.rows[2]"),
     ((), "", "<top>"), ((), "data", "data")],
)  # fmt: skip
def test_field_path(loc, prefix, path):
    assert field_path(loc, prefix) == path


def test_problems_name_paths_and_never_the_input():
    with pytest.raises(ValidationError) as caught:
        Data.model_validate({"rows": [{"ciphertexts": [1, SECRET]}, {"ciphertexts": [], SECRET: 1}], "junk": SECRET})
    problems = validation_problems(caught.value, "data")
    assert [p.split(":")[0] for p in problems] == ["data.rows[0].ciphertexts[1]", f"data.rows[1].{SECRET}", "data.junk"]
    assert all(SECRET not in p.split(":", 1)[1] for p in problems)
    assert len(validation_problems(caught.value, "data", limit=2)) == 2


@pytest.mark.parametrize("text, said", [(None, "must be a base64 string"), ("not base64!", "is not valid base64"),
                                        ("QUJD\n", "is not valid base64"), ("QUJ", "is not valid base64")])  # fmt: skip
def test_strict_base64_names_the_field(text, said):
    from sei_framework import InvalidRequest, decode_base64

    with pytest.raises(InvalidRequest) as caught:
        decode_base64(text, "ciphertext 3", code="invalid_keys")
    assert caught.value.code == "invalid_keys" and caught.value.message == f"ciphertext 3 {said}"
    assert decode_base64("QUJD", "x") == b"ABC"


def test_base64_size_is_the_encoded_length():
    import base64

    from sei_framework import base64_size

    for n in [*range(8), 4096, 1 << 20, (1 << 20) + 1]:
        assert base64_size(n) == len(base64.b64encode(bytes(n))), n
    with pytest.raises(ValueError, match="negative"):
        base64_size(-1)
