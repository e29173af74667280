"""Property-based fuzzing: whatever arrives, the service answers a 4xx JSON error, never a 500 or a crash."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import yaml
from conftest import keyed_request, with_bounds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sei_framework import Deployment, InvalidRequest, key_id_for
from sei_framework.keys import KEY_ID_PATTERN, check_key_id
from sei_framework.serving import ScoringService

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NATIVE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
b64_bytes = st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode("ascii"))


@pytest.fixture(scope="module")
def served(tmp_path_factory, model_files):
    """An in-process service of the diabetes model, a client whose keys it already holds, and a good request."""
    folder = tmp_path_factory.mktemp("fuzz")
    config = {
        "name": "fuzz",
        "models": [with_bounds({"name": "diabetes", "adapter": "sklearn-eiserver", "path": str(model_files["diabetes"][0])})],
    }
    (folder / "fuzz.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(folder / "fuzz.yaml").build(folder / "build")
    service = ScoringService.from_build(build.path)
    client, good, publish, _ = keyed_request(service, "diabetes", model_files["diabetes"][2][:1])
    answer, status = service.handle(json.dumps({**good, **publish}))
    assert status == 200, answer
    return service, client, good


def assert_refused(answer: dict, status: int) -> None:
    assert 400 <= status < 500, (status, answer)
    assert set(answer) == {"error"} and isinstance(answer["error"]["code"], str) and answer["error"]["code"]
    assert isinstance(answer["error"]["message"], str)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused(served, raw):
    service, _, _ = served
    assert_refused(*service.handle(raw))


@FUZZ
@given(body=json_values)
def test_arbitrary_json_is_refused_unless_it_is_describe(served, body):
    service, _, _ = served
    answer, status = service.handle(json.dumps(body))
    if isinstance(body, dict) and body.get("op") == "describe":
        assert status == 200 and "models" in answer
    else:
        assert_refused(answer, status)


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "op": st.sampled_from(["predict", "describe", "train"]) | json_values,
            "model": st.sampled_from(["diabetes", "digits"]) | json_values,
            "key_id": st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=31, max_size=33) | json_values,
            "data": json_values,
            "public_keys": b64_bytes | json_values,
        },
    )
)
def test_requests_with_fuzzed_fields_are_refused(served, fields):
    service, _, _ = served
    answer, status = service.handle(json.dumps(fields))
    if fields.get("op") == "describe":
        assert status == 200
    else:
        assert_refused(answer, status)


rows = st.lists(st.lists(b64_bytes | st.text(max_size=20) | json_values, max_size=3), max_size=4)
data_values = (
    json_values
    | st.fixed_dictionaries({"rows": rows}, optional={"n_features": st.sampled_from([10, 0, -1, "10", None]) | st.integers()})
    | st.text()
    | b64_bytes
)


@FUZZ
@given(data=data_values)
def test_fuzzed_data_with_real_keys_is_refused(served, data):
    service, _, good = served
    assert_refused(*service.handle(json.dumps({**good, "data": data})))


@NATIVE
@given(cut=st.integers(0, 2**20), tail=st.binary(min_size=0, max_size=64), flip=st.integers(0, 2**20))
def test_mutated_ciphertexts_are_refused_or_scored(served, cut, tail, flip):
    """Ciphertexts with a valid SEAL header but damaged bodies: refused by the parameter checks, or by
    the native library in the forked child (crashes become 4xx), or scored when still well formed."""
    service, _, good = served
    blob = bytearray(base64.b64decode(good["data"]["rows"][0][0]))
    body = blob[16:]
    body = body[: cut % (len(body) + 1)] + tail
    if body:
        body[flip % len(body)] ^= 0xFF
    mutated = bytes(blob[:8]) + (16 + len(body)).to_bytes(8, "little") + bytes(body)
    data = {**good["data"], "rows": [[base64.b64encode(mutated).decode()]]}
    answer, status = service.handle(json.dumps({**good, "data": data}))
    if status == 200:  # a flipped byte in a coefficient can still be a valid ciphertext
        assert len(answer["result"]) == 1
    else:
        assert_refused(answer, status)


@NATIVE
@given(parts=st.lists(st.binary(max_size=100), min_size=1, max_size=3), header_ok=st.booleans())
def test_fuzzed_public_keys_are_refused(served, parts, header_ok):
    """Public keys whose key id matches but whose content is junk (with or without SEAL headers)."""
    service, _, good = served
    if header_ok:
        parts = [bytes.fromhex("5ea1") + bytes([16, 3, 4, 0, 0, 0]) + (16 + len(p)).to_bytes(8, "little") + p for p in parts]
    raw = b"".join(parts)
    request = {**good, "key_id": key_id_for(raw), "public_keys": base64.b64encode(raw).decode()}
    assert_refused(*service.handle(json.dumps(request)))


def test_the_service_still_answers_correctly_after_fuzzing(served, model_files):
    service, client, good = served
    answer, status = service.handle(json.dumps(good))
    assert status == 200, answer
    _, model, X = model_files["diabetes"]
    np.testing.assert_allclose(client.decrypt(answer["result"], 1)[:, 0], model.predict(X[:1]), atol=1e-3)


@settings(max_examples=200, deadline=None)
@given(value=json_values | st.binary() | st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567ABC/.", max_size=40))
def test_check_key_id_accepts_exactly_the_pattern(value):
    if isinstance(value, str) and KEY_ID_PATTERN.match(value):
        assert check_key_id(value) == value
    else:
        with pytest.raises(InvalidRequest) as info:
            check_key_id(value)
        assert info.value.code == "invalid_key_id"


@settings(max_examples=200, deadline=None)
@given(request=st.dictionaries(st.sampled_from(["public_keys", "other"]), json_values | b64_bytes), keys=st.binary(max_size=100))
def test_inline_fetch_returns_bytes_none_or_invalid_keys(request, keys):
    from sei_transport_inline import InlineTransport

    transport = InlineTransport(InlineTransport.Options())
    assert transport.fetch("a" * 32, transport.publish("a" * 32, keys)) == keys
    try:
        fetched = transport.fetch("a" * 32, request)
    except InvalidRequest as exc:
        assert exc.code == "invalid_keys"
    else:
        absent = request.get("public_keys") is None  # a JSON null counts as no keys
        assert fetched is None if absent else isinstance(fetched, bytes)


@settings(max_examples=200, deadline=None)
@given(row=json_values | st.lists(b64_bytes, max_size=3), expected=st.integers(1, 3), prefix=st.booleans())
def test_decode_ciphertexts_returns_bytes_or_invalid_ciphertext(row, expected, prefix):
    from sei_adapter_sklearn.eiserver_native import decode_ciphertexts

    if prefix and isinstance(row, list) and all(isinstance(c, str) for c in row):
        def with_header(text: str) -> str:
            try:
                body = base64.b64decode(text, validate=True)
            except ValueError:  # not base64: left as it is, for the decoder to refuse
                return text
            blob = bytes.fromhex("5ea1") + bytes([16, 3, 4, 0, 0, 0]) + (16 + len(body)).to_bytes(8, "little") + body
            return base64.b64encode(blob).decode()

        row = [with_header(c) if i % 2 == 0 else c for i, c in enumerate(row)]
    try:
        joined = decode_ciphertexts(row, expected)
    except InvalidRequest as exc:
        assert exc.code == "invalid_ciphertext"
    else:
        assert isinstance(joined, bytes) and len(row) == expected
        assert joined == b"".join(base64.b64decode(c) for c in row)


# --- the packed adapter: its wire parsers see every byte before SEAL does ------------------------


@pytest.fixture(scope="module")
def served_packed(tmp_path_factory, model_files):
    """An in-process service of the diabetes model on sklearn-packed, single-row and bulk, keys cached."""
    folder = tmp_path_factory.mktemp("fuzz-packed")
    path = str(model_files["diabetes"][0])
    config = {
        "name": "fuzz-packed",
        "models": [
            with_bounds({"name": "single", "adapter": "sklearn-packed", "path": path}),
            with_bounds({"name": "bulk", "adapter": "sklearn-packed", "path": path, "options": {"mode": "bulk"}}),
        ],
    }
    (folder / "fuzz.yaml").write_text(yaml.safe_dump(config))
    service = ScoringService.from_build(Deployment.from_file(folder / "fuzz.yaml").build(folder / "build").path)
    goods = {}
    for name in ("single", "bulk"):
        client, good, publish, _ = keyed_request(service, name, model_files["diabetes"][2][:3])
        answer, status = service.handle(json.dumps({**good, **publish}))
        assert status == 200, answer
        goods[name] = (client, good)
    return service, goods


packed_data = (
    json_values
    | st.fixed_dictionaries(
        {"ciphertexts": st.lists(b64_bytes | json_values, max_size=3)},
        optional={"n_features": st.sampled_from([10, 0, "10", None]) | st.integers(), "n_rows": json_values},
    )
)


@FUZZ
@given(model=st.sampled_from(["single", "bulk"]), data=packed_data)
def test_packed_fuzzed_data_is_refused(served_packed, model, data):
    service, goods = served_packed
    assert_refused(*service.handle(json.dumps({**goods[model][1], "data": data})))


@FUZZ
@given(
    model=st.sampled_from(["single", "bulk"]),
    cut=st.integers(0, 2**24),
    tail=st.binary(max_size=64),
    flip=st.integers(0, 2**24),
    keep_header=st.booleans(),
)
def test_packed_mutated_ciphertexts_are_refused_or_scored(served_packed, model, cut, tail, flip, keep_header):
    """Damaged messages with (or without) a valid header: a 4xx, or a result when only a residue changed."""
    service, goods = served_packed
    good = goods[model][1]
    blob = bytearray(base64.b64decode(good["data"]["ciphertexts"][0]))
    start = 24 if keep_header else 0
    body = blob[start:][: cut % (len(blob) - start + 1)] + tail
    if body:
        body[flip % len(body)] ^= 0xFF
    mutated = bytes(blob[:start]) + bytes(body)
    data = {**good["data"], "ciphertexts": [base64.b64encode(mutated).decode()]}
    answer, status = service.handle(json.dumps({**good, "data": data}))
    if status == 200:  # a flipped byte inside a residue can leave a well-formed ciphertext
        assert len(mutated) == len(blob) and len(answer["result"]) == 1
    else:
        assert_refused(answer, status)


@FUZZ
@given(model=st.sampled_from(["single", "bulk"]), raw=st.binary(max_size=300), real_prefix=st.integers(0, 64))
def test_packed_fuzzed_public_keys_are_refused(served_packed, model, raw, real_prefix):
    service, goods = served_packed
    client, good = goods[model]
    raw = client._keys.public_bytes()[:real_prefix] + raw  # sometimes a valid header, never a valid key
    request = {**good, "key_id": key_id_for(raw), "public_keys": base64.b64encode(raw).decode()}
    assert_refused(*service.handle(json.dumps(request)))


def test_packed_service_still_answers_correctly_after_fuzzing(served_packed, model_files):
    service, goods = served_packed
    _, model, X = model_files["diabetes"]
    for client, good in goods.values():
        answer, status = service.handle(json.dumps(good))
        assert status == 200, answer
        np.testing.assert_allclose(client.decrypt(answer["result"], 3)[:, 0], model.predict(X[:3]), atol=1e-3)


@FUZZ
@given(
    description=st.fixed_dictionaries(
        {},
        optional={
            "n_features": st.integers(-2, 5) | json_values,
            "n_outputs": st.integers(-2, 5) | json_values,
            "readout": json_values
            | st.fixed_dictionaries(
                {},
                optional={
                    "kind": st.sampled_from(["classifier", "regressor"]) | json_values,
                    "decision": st.sampled_from(["sign", "argmax", "identity", "multioutput"]) | json_values,
                    "proba": st.sampled_from(["sigmoid", "softmax"]) | json_values,
                    "classes": json_values,
                },
            ),
        },
    )
)
def test_a_client_reads_any_model_description_or_says_it_cannot(description):
    """A buggy or hostile service's `describe` answer never crashes the client with a foreign error."""
    from sei_adapter_sklearn.common import from_readout  # what LinearClient.__init__ reads it with

    try:
        from_readout(description)
    except InvalidRequest as exc:
        assert exc.code == "invalid_response" and "cannot be read" in exc.message
