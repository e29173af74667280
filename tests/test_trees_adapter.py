"""The trees-seal adapter's own checks, without SEAL: options, request fields, the artefacts as data,
what describe() tells the client (never trees or leaf values), and the rows a client refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from sei_adapter_trees.artefacts import ENSEMBLE_FILE, load_ensemble, readout, save_ensemble
from sei_adapter_trees.building import score_ceiling
from sei_adapter_trees.backend import Plan, plan_from_json
from sei_adapter_trees.client import TreesClient
from sei_adapter_trees.engine.ir import Ensemble, Split, Tree
from sei_adapter_trees.options import TreesOptions
from sei_adapter_trees.request import batch_sizes, parse_request

from sei_framework import InvalidRequest

LEAVES = np.array([[0.1, 0.9], [0.625, 0.375], [0.75, 0.25]])


def ensemble(classes: tuple = ("cat", "dog")) -> Ensemble:
    """x0 <= 0.5 ? leaf 0 : (x1 < 2 ? leaf 1 : leaf 2); NaN goes left at the root, right below."""
    splits = (Split(0, 0.5, "<=", "float32", True), Split(1, 2.0, "<", "float64", False))
    tree = Tree(np.array([0, 1], np.int32), np.array([~0, ~1], np.int32), np.array([1, ~2], np.int32), LEAVES.copy())
    return Ensemble(2, splits, (tree,), 2, np.zeros(2), True, "identity", "classification", classes).validate()


def plan(slots: int = 8) -> Plan:
    return Plan('{"params": {}}', slots, 1000, 500, 5000, 1e-6, "BGV")


def description(model: Ensemble) -> dict:
    from sei_adapter_trees.artefacts import split_to_json

    return {
        "n_features": model.n_features, "n_outputs": model.n_outputs, "splits": [split_to_json(s) for s in model.splits],
        "readout": readout(model), "encryption": {"params": plan().to_json()},
        "accuracy": {"error_bound": 1e-6, "max_abs_sum": score_ceiling(model), "tolerance": 1e-4},
    }  # fmt: skip


def test_options_are_strict():
    assert TreesOptions().mode == "splits"
    with pytest.raises(ValidationError, match="calibration_data"):
        TreesOptions(mode="thermometer")
    for bad in ({"tolerance": 0}, {"n_bits": "6"}, {"min_agreement": 1.5}, {"mode": "bits"}, {"max_rows": 4}):
        with pytest.raises(ValidationError):
            TreesOptions(**bad)


@pytest.mark.parametrize(
    "data, code, words",
    [
        ([1, 2], "invalid_data", "must be an object"),
        ({"n_features": 2, "n_rows": 1}, "invalid_data", "batches"),
        ({"n_features": 2, "n_rows": True, "batches": ["a"]}, "invalid_data", "n_rows"),
        ({"n_features": 2, "n_rows": 0, "batches": ["a"]}, "invalid_data", "n_rows"),
        ({"n_features": 2, "n_rows": 1, "batches": [1]}, "invalid_data", "batches"),
        ({"n_features": 2, "n_rows": 1, "batches": []}, "invalid_data", "batches"),
        ({"n_features": 2, "n_rows": 1, "batches": ["a"], "keys": "x"}, "invalid_data", "keys"),
        ({"n_features": 3, "n_rows": 1, "batches": ["a"]}, "wrong_features", "takes 2 features"),
        ({"n_features": 2, "n_rows": 1, "batches": ["a", "b"]}, "invalid_data", "1 batch"),
        ({"n_features": 2, "n_rows": 9, "batches": ["a"]}, "invalid_data", "2 batch"),
        ({"n_features": 2, "n_rows": 2**31, "batches": ["a"]}, "invalid_data", "batch"),
    ],
)
def test_request_counts_are_checked_before_any_ciphertext(data, code, words):
    with pytest.raises(InvalidRequest, match=words) as caught:
        parse_request(data, n_features=2, slots=8)
    assert caught.value.code == code


def test_a_request_of_whole_batches_is_accepted():
    request = parse_request({"n_features": 2, "n_rows": 9, "batches": ["a", "b"]}, n_features=2, slots=8)
    assert request.n_rows == 9 and batch_sizes(9, 8) == [8, 1]


@pytest.mark.parametrize("classes", [("cat", "dog"), (3, 7), (False, True), (0.5, 1.5)])
def test_the_artefacts_round_trip_as_data_with_labels_of_any_type(tmp_path, classes):
    model = ensemble(classes)
    save_ensemble(model, tmp_path)
    loaded = load_ensemble(tmp_path)
    assert loaded.classes == classes and [type(c) for c in loaded.classes] == [type(c) for c in classes]
    assert loaded.splits == model.splits
    np.testing.assert_array_equal(loaded.trees[0].leaf_values, LEAVES)
    client = TreesClient(description(loaded))
    assert client.classes is not None and client.classes.tolist() == list(classes)
    assert client.classes.dtype == np.asarray(classes).dtype


def test_labels_json_cannot_carry_can_not_be_built():
    with pytest.raises(ValueError, match="tuple"):
        readout(ensemble(((1, 2), (3, 4))))


def test_describe_readout_holds_no_tree_structure_or_leaf_values(tmp_path):
    model = ensemble()
    shown = json.dumps(description(model))
    for value in LEAVES.ravel():
        assert repr(float(value)) not in shown  # no leaf value reaches the client
    assert not {"\"left\"", "\"right\"", "\"split\"", "\"leaf_values\""} & {w.rstrip(":") for w in shown.split()}
    assert score_ceiling(model) == 1.0  # 0.9 rounded up: an order of magnitude, not a leaf value
    save_ensemble(model, tmp_path)
    assert "leaf" not in (tmp_path / ENSEMBLE_FILE).read_text()  # leaf values live only in the npz


def test_the_client_reads_ties_as_the_library_settles_them():
    """Scores within twice the bound of the best are a tie: the first class wins, as in predict's argmax."""
    client = TreesClient(description(ensemble()))
    raw = np.array([[0.5, 0.5 + 1e-6], [0.5 + 1e-6, 0.5], [0.4, 0.6], [0.6, 0.4]])
    assert client.interpret(raw).predictions.tolist() == ["cat", "cat", "dog", "cat"]
    np.testing.assert_array_equal(client.interpret(raw).probabilities, raw)  # forest: averaged leaf fractions


@pytest.mark.parametrize(
    "rows, code, words",
    [
        (np.zeros((2, 3)), "wrong_features", "2 features"),
        (np.zeros(2), "wrong_features", "2 features"),
        (np.array([[0.0, np.inf]]), "input_out_of_bounds", r"row 0, feature 1: .* is infinite"),
        (np.array([[0.0, 1.0], [-np.inf, 1.0]]), "input_out_of_bounds", "row 1, feature 0"),
        (np.array([[3.5e38, 1.0]]), "input_out_of_bounds", "too large for the model.s float32"),
        (np.array([["a", "b"]]), "input_out_of_bounds", "numbers"),
    ],
)
def test_the_client_refuses_rows_it_cannot_route(rows, code, words):
    client = TreesClient(description(ensemble()))
    with pytest.raises(InvalidRequest, match=words) as caught:
        client.check_rows(rows)
    assert caught.value.code == code
    client.check_rows(np.array([[np.nan, 1.0]]))  # NaN is a missing value: routed as the library routes it


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(n_features=0),
        lambda d: d.update(splits=[]),
        lambda d: d["splits"][0].update(feature=5),
        lambda d: d["splits"][0].update(op="=="),
        lambda d: d["splits"][0].update(threshold=float("inf")),
        lambda d: d["readout"].update(classes={"values": ["a"], "dtype": "<U1"}),
        lambda d: d["encryption"]["params"].update(slots=0),
        lambda d: d["readout"].update(n_trees=0),
        lambda d: d.pop("accuracy"),
    ],
)
def test_a_description_the_client_cannot_read_is_refused(change):
    described = description(ensemble())
    change(described)
    with pytest.raises(InvalidRequest) as caught:
        TreesClient(described)
    assert caught.value.code == "invalid_response"


def test_plan_round_trips_and_refuses_damage():
    assert plan_from_json(plan().to_json()) == plan()
    with pytest.raises(ValueError):
        plan_from_json({**plan().to_json(), "extra": 1})
