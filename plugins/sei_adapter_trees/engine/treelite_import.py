"""Treelite 4.x model -> IR (``ir.Ensemble``), and the library front ends that reach a Treelite model.

Treelite carries the structure, comparison operators, default directions, leaf vectors, target/class ids, base
scores and post-processor of every library; numbers are read through its field accessors (exact binary values),
names (node types, operators, post-processor) from its documented JSON dump. What Treelite does not carry is the
precision the library compares in: each front end passes it (``dtype``), with the original class labels.

Refusals raise ``UnsupportedModel`` with a message naming what and why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .ir import Dtype, Ensemble, Op, Split, Task, Tree, finite_split

# Treelite post-processor -> (IR post-processor, whether it is a classifier's). Anything else is refused by name.
_POSTPROCESSORS = {
    "identity": "identity",
    "identity_multiclass": "identity",
    "sigmoid": "sigmoid",
    "multiclass_ova": "sigmoid",
    "softmax": "softmax",
    "exponential": "exponential",
    "logarithm_one_plus_exp": "logarithm_one_plus_exp",
}
_TASKS = {"kBinaryClf": "classification", "kMultiClf": "classification", "kRegressor": "regression"}


class UnsupportedModel(ValueError):
    """A model SEI cannot serve exactly; the message names what and why."""


def from_treelite(
    model: Any,
    *,
    dtype: Dtype,
    classes: Sequence[Any] | None = None,
    zero_band: float = 0.0,
    task: Task | None = None,
) -> Ensemble:
    """Convert a ``treelite.Model`` to the IR.

    ``dtype``: the precision the library rounds a feature to before comparing. ``classes``: the original labels
    (default ``0..n_class-1``; two labels for a one-output binary classifier). ``zero_band``: the library reads
    any ``|x| <= zero_band`` as 0.0 before comparing (LightGBM's kZeroThreshold); each split is rewritten to the
    equivalent comparison on the raw value, so the client needs no such rule. ``task``: what the caller knows
    the model is (a scikit-learn wrapper's kind), over Treelite's reading of the objective.
    """
    # Treelite's JSON writer leaves a non-finite number's value empty ("threshold":,): read it as null; the
    # number itself comes from the field accessor.
    doc = json.loads(re.sub(r":(?=[,}\]])", ":null", model.dump_as_json(pretty_print=False)))
    header = model.get_header_accessor()
    task = task or _TASKS.get(doc["task_type"])  # type: ignore[assignment]
    if task is None:
        raise UnsupportedModel(f"Treelite task {doc['task_type']!r} is not served (only classification and regression)")
    if int(doc["num_target"]) != 1:
        raise UnsupportedModel(f"multi-output models are not served ({doc['num_target']} targets)")
    post = doc["postprocessor"]
    if post not in _POSTPROCESSORS:
        raise UnsupportedModel(f"post-processor {post!r} is not served (served: {', '.join(sorted(_POSTPROCESSORS))})")
    n_class = int(doc["num_class"][0])
    if task == "classification" and n_class == 1 and post != "sigmoid":
        raise UnsupportedModel(f"a binary classifier whose output is {post!r}, not a probability (XGBoost's "
                               "binary:logitraw, for one): its labels depend on a threshold the model does not record")
    n_outputs = n_class
    leaf_shape = tuple(int(v) for v in doc["leaf_vector_shape"])
    if leaf_shape not in ((1, 1), (1, n_class)):
        raise UnsupportedModel(f"leaf vectors of shape {leaf_shape} are not served")
    target_id = [int(v) for v in doc["target_id"]]
    class_id = [int(v) for v in doc["class_id"]]
    split_index: dict[Split, int] = {}
    trees = tuple(
        _tree(model, k, node_doc["nodes"], dtype, n_outputs, class_id[k], target_id[k], split_index, zero_band)
        for k, node_doc in enumerate(doc["trees"])
    )
    base = _field(header, "base_scores", np.float64).reshape(-1)
    if base.tolist() != [float(v) for v in doc["base_scores"]]:
        raise UnsupportedModel("Treelite's base scores cannot be read exactly")
    if base.shape != (n_outputs,):
        raise UnsupportedModel(f"base scores of shape {base.shape} for {n_outputs} outputs are not served")
    params: dict[str, float] = {}
    if post == "sigmoid" or post == "multiclass_ova":
        params["sigmoid_alpha"] = float(_field(header, "sigmoid_alpha", np.float64)[0])
    labels: tuple[Any, ...] | None = None
    if task == "classification":
        n_labels = 2 if n_class == 1 else n_class
        labels = tuple(classes) if classes is not None else tuple(range(n_labels))
        if len(labels) != n_labels:
            raise UnsupportedModel(f"the model has {n_labels} classes but {len(labels)} labels were given")
        if len(set(map(repr, labels))) != len(labels):
            raise UnsupportedModel("the class labels are not distinct")
    elif classes is not None:
        raise UnsupportedModel("a regressor has no class labels")
    return Ensemble(
        n_features=int(doc["num_feature"]),
        splits=tuple(split_index),
        trees=trees,
        n_outputs=n_outputs,
        base_score=base,
        average=bool(doc["average_tree_output"]),
        postprocess=_POSTPROCESSORS[post],
        task=task,
        classes=labels,
        postprocess_params=params,
    ).validate()


def _outside_band(t: float, op: Op, z: float) -> tuple[float, Op]:
    """The comparison on raw ``x`` equal to ``g(x) <op> t`` where ``g`` maps ``[-z, z]`` to 0.0 (for ``op`` "<=")."""
    if op != "<=" or t >= z or t < -z:
        return t, op  # the band falls wholly on one side, as 0.0 does
    if t >= 0.0:
        return z, "<="  # 0.0 <= t: the whole band goes left with everything below it
    return -z, "<"  # 0.0 > t: the band goes right, so only x < -z goes left


def _field(accessor: Any, name: str, dtype: type[np.generic]) -> np.ndarray:
    """A Treelite field, copied at once: the accessor's array is a view of a buffer Treelite may free."""
    return np.array(accessor.get_field(name), copy=True).astype(dtype).reshape(-1)


def _tree(
    model: Any,
    k: int,
    nodes: list[dict[str, Any]],
    dtype: Dtype,
    n_outputs: int,
    class_id: int,
    target_id: int,
    split_index: dict[Split, int],
    zero_band: float,
) -> Tree:
    acc = model.get_tree_accessor(k)
    threshold = _field(acc, "threshold", np.float64)
    leaf_value = _field(acc, "leaf_value", np.float64)
    leaf_vector = _field(acc, "leaf_vector", np.float64)
    vec_begin = _field(acc, "leaf_vector_begin", np.int64)
    vec_end = _field(acc, "leaf_vector_end", np.int64)
    if target_id not in (-1, 0):
        raise UnsupportedModel(f"tree {k} predicts target {target_id}: multi-output models are not served")
    # Node ids -> internal ids (pre-order from the root) and leaf ids.
    by_id = {int(n["node_id"]): n for n in nodes}
    internal: dict[int, int] = {}
    leaves: dict[int, int] = {}
    order = [0]
    while order:
        nid = order.pop()
        node = by_id[nid]
        if "leaf_value" in node:
            leaves[nid] = len(leaves)
            continue
        kind = node.get("node_type")
        if kind == "categorical_test_node":
            raise UnsupportedModel(f"tree {k} has a categorical split (feature {node['split_feature_id']}): not served")
        if kind != "numerical_test_node":
            raise UnsupportedModel(f"tree {k}: node type {kind!r} is not served")
        internal[nid] = len(internal)
        order.extend((int(node["right_child"]), int(node["left_child"])))
    n = len(internal)
    split = np.zeros(n, dtype=np.int32)
    left = np.zeros(n, dtype=np.int32)
    right = np.zeros(n, dtype=np.int32)
    for nid, i in internal.items():
        node = by_id[nid]
        op: Op = node["comparison_op"]
        if op not in ("<", "<="):
            raise UnsupportedModel(f"tree {k}: comparison {op!r} is not served (only < and <=)")
        t = float(threshold[nid])
        stated = node["threshold"]
        if math.isnan(t) or (t != float(stated) if stated is not None else math.isfinite(t)):
            raise UnsupportedModel(f"tree {k} node {nid}: threshold {node['threshold']!r} cannot be read exactly")
        t, op = _outside_band(t, op, zero_band) if zero_band else (t, op)
        s = finite_split(int(node["split_feature_id"]), t, op, dtype, bool(node["default_left"]))
        split[i] = split_index.setdefault(s, len(split_index))
        for arr, child in ((left, int(node["left_child"])), (right, int(node["right_child"]))):
            arr[i] = internal[child] if child in internal else ~leaves[child]
    values = np.zeros((len(leaves), n_outputs), dtype=np.float64)
    for nid, j in leaves.items():
        vec = leaf_vector[vec_begin[nid] : vec_end[nid]]
        if vec.size == n_outputs and (class_id == -1 or n_outputs == 1):
            values[j] = vec
        elif vec.size <= 1:  # a scalar leaf: it adds to its tree's class only
            out = 0 if n_outputs == 1 else class_id
            if not 0 <= out < n_outputs:
                raise UnsupportedModel(f"tree {k}: a scalar leaf for class {class_id} in a {n_outputs}-output model")
            values[j, out] = vec[0] if vec.size else leaf_value[nid]
        else:
            raise UnsupportedModel(f"tree {k}: a leaf vector of {vec.size} values for {n_outputs} outputs")
    return Tree(split=split, left=left, right=right, leaf_values=values)
