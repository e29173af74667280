"""Every field of every adapter's `data`, replaced by every JSON type, removed, or joined by junk:
always a 4xx that names the problem, never an internal error, and the service keeps serving."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml
from conftest import keyed_request, with_bounds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sei_framework import Deployment
from sei_framework.serving import ScoringService

# One of each JSON type, and the values Python confuses with others (True is an int, 10.0 == 10).
JSON_VALUES = [
    None, True, False, 0, 1, -1, 3, 10.0, 1.5, 2**64, -(2**70), 1e308, "", "10", "not base64 %%",
    "aGVsbG8=", [], [None], [1, 2], [[]], [["aGVsbG8="]], [[[]]], {}, {"rows": []}, {"a": {"b": [1]}},
]  # fmt: skip
MODELS = ("eiserver", "single", "bulk")
PACKED_PATHS = [(), ("n_features",), ("n_rows",), ("ciphertexts",), ("ciphertexts", 0)]
# (model, form, path into `data`): the fields the client sends, and the items of its lists
FIELDS = [
    ("eiserver", "rows", ()),
    ("eiserver", "rows", ("n_features",)),
    ("eiserver", "rows", ("rows",)),
    ("eiserver", "rows", ("rows", 0)),
    ("eiserver", "rows", ("rows", 0, 0)),
    ("eiserver", "tutorial", ()),
    ("eiserver", "tutorial", (0,)),
    *[(m, "packed", path) for m in ("single", "bulk") for path in PACKED_PATHS],
]


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_files):
    """One in-process service: the diabetes model on both adapters (packed single and bulk), keys cached."""
    folder = tmp_path_factory.mktemp("inputs")
    path = str(model_files["diabetes"][0])
    config = {
        "name": "inputs",
        "models": [
            with_bounds({"name": "eiserver", "adapter": "sklearn-eiserver", "path": path}),
            with_bounds({"name": "single", "adapter": "sklearn-packed", "path": path}),
            with_bounds({"name": "bulk", "adapter": "sklearn-packed", "path": path, "options": {"mode": "bulk"}}),
        ],
    }
    (folder / "inputs.yaml").write_text(yaml.safe_dump(config))
    service = ScoringService.from_build(Deployment.from_file(folder / "inputs.yaml").build(folder / "build").path)
    rows = {"eiserver": 1, "single": 3, "bulk": 3}
    goods = {}
    for name in MODELS:
        client, good, publish, _ = keyed_request(service, name, model_files["diabetes"][2][: rows[name]])
        answer, status = service.handle(json.dumps({**good, **publish}))
        assert status == 200, answer
        goods[name] = (client, good)
    return service, goods


def body_for(goods, model: str, form: str) -> dict:
    client, good = goods[model]
    if form == "tutorial":  # EILinearRegressionClient's own output for one row, as the tutorial sends it
        return {**good, "data": good["data"]["rows"][0]}
    return copy.deepcopy(good)


def value_at(body: dict, path: tuple):
    value = body["data"]
    for step in path:
        value = value[step]
    return value


def with_value(body: dict, path: tuple, value, remove: bool = False) -> dict:
    body = copy.deepcopy(body)
    if not path:
        body["data"] = value
        return body
    parent = body["data"]
    for step in path[:-1]:
        parent = parent[step]
    if remove:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body


def assert_refused(answer: dict, status: int, where: str) -> None:
    assert 400 <= status < 500, (where, status, answer)
    assert answer["error"]["code"] != "internal_error", (where, answer)
    assert answer["error"]["message"], (where, answer)


def assert_serves(service, goods, model: str) -> None:
    answer, status = service.handle(json.dumps(goods[model][1]))
    assert status == 200, answer


FIELD_IDS = [f"{m}-{f}-{'.'.join(map(str, p)) or 'data'}" for m, f, p in FIELDS]


@pytest.mark.parametrize(("model", "form", "path"), FIELDS, ids=FIELD_IDS)
def test_every_json_type_in_every_field_is_a_4xx(service, model, form, path):
    service, goods = service
    good = body_for(goods, model, form)
    current = value_at(good, path)
    for value in JSON_VALUES:
        if type(value) is type(current) and value == current:  # the good request itself
            continue
        assert_refused(*service.handle(json.dumps(with_value(good, path, value))), f"{path}={value!r}")
    if path and isinstance(path[-1], str):
        answer, status = service.handle(json.dumps(with_value(good, path, None, remove=True)))
        if (model, path) == ("single", ("n_rows",)):  # optional: a single-row request holds one row per ciphertext
            assert status == 200, answer
        else:
            assert_refused(answer, status, f"without {path}")
    if form != "tutorial":
        answer, status = service.handle(json.dumps(with_value(good, ("junk",), 1)))
        assert_refused(answer, status, "junk field")
        assert answer["error"]["code"] == "invalid_data" and "data.junk" in answer["error"]["message"], answer


@pytest.mark.parametrize("model", MODELS)
def test_type_errors_name_the_field_and_the_type_and_never_echo_the_value(service, model):
    service, goods = service
    good = goods[model][1]
    field = "rows" if model == "eiserver" else "ciphertexts"
    for path, value, named in [
        (("n_features",), True, "data.n_features: Input should be a valid integer"),
        (("n_features",), "10", "data.n_features: Input should be a valid integer"),
        ((field,), 1, f"data.{field}: Input should be a valid list"),
        ((field, 0), {"secret": "c2VjcmV0IGJ5dGVz"}, f"data.{field}[0]: Input should be a valid"),
    ]:
        answer, status = service.handle(json.dumps(with_value(good, path, value)))
        assert status == 400 and answer["error"]["code"] == "invalid_data", answer
        assert named in answer["error"]["message"], answer
        assert "c2VjcmV0" not in answer["error"]["message"]


def test_the_reported_packed_request_is_a_400(service):
    """The defect as reported: a packed request whose ciphertexts are a number."""
    service, goods = service
    for model in ("single", "bulk"):
        body = {**goods[model][1], "data": {"n_features": 10, "ciphertexts": 1}}
        answer, status = service.handle(json.dumps(body))
        assert status == 400 and answer["error"]["code"] == "invalid_data", answer
        assert "data.ciphertexts" in answer["error"]["message"]


def test_count_rows_and_predict_agree_on_what_they_accept(service):
    """Both read the data through one parser: count_rows refuses whatever predict would refuse as data."""
    from sei_framework import InvalidRequest

    service, goods = service
    for model in MODELS:
        adapter = service.adapters[model]
        for value in JSON_VALUES:
            with pytest.raises(InvalidRequest) as info:
                adapter.count_rows(value if model != "eiserver" or not isinstance(value, list) else [value])
            assert info.value.code == "invalid_data"
        assert adapter.count_rows(goods[model][1]["data"]) == (1 if model == "eiserver" else 3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_fuzzed_values_in_any_field_are_a_4xx(service, field, value):
    service_, goods = service
    model, form, path = field
    good = body_for(goods, model, form)
    current = value_at(good, path)
    answer, status = service_.handle(json.dumps(with_value(good, path, value)))
    if type(value) is type(current) and value == current:
        assert status == 200, answer
    else:
        assert_refused(answer, status, f"{path}={value!r}")


def test_the_service_still_answers_every_model_correctly(service, model_files):
    service, goods = service
    _, model, X = model_files["diabetes"]
    for name, n in (("eiserver", 1), ("single", 3), ("bulk", 3)):
        client, good = goods[name]
        answer, status = service.handle(json.dumps(good))
        assert status == 200, answer
        np.testing.assert_allclose(client.decrypt(answer["result"], n)[:, 0], model.predict(X[:n]), atol=1e-3)
    tutorial = body_for(goods, "eiserver", "tutorial")
    answer, status = service.handle(json.dumps(tutorial))
    assert status == 200 and isinstance(answer["result"], list) and len(answer["result"]) == 1, answer


@pytest.mark.parametrize("model", MODELS)
def test_a_client_without_keys_says_so(service, model, model_files):
    """Encrypting or decrypting before use_keys is a clear error, not an AttributeError on None."""
    service, _ = service
    client = type(service.adapters[model]).client(service.describe()["models"][model])
    rows = model_files["diabetes"][2][:1]
    with pytest.raises(RuntimeError, match=r"no keys yet: call use_keys"):
        client.encrypt(rows)
    result = [["aGVsbG8="]] if model == "eiserver" else ["aGVsbG8="]
    with pytest.raises(RuntimeError, match=r"no keys yet: call use_keys"):
        client.decrypt(result, 1)
