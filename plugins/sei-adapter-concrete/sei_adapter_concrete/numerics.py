"""The client's arithmetic in the clear: quantize rows, dequantize outputs, read them as the model does.

Concrete ML does these steps in `FHEModelClient`, which needs all of Concrete ML; here they are plain
numpy on the parameters the service describes, and the build checks, on the calibration rows, that
they give exactly what Concrete ML gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["quantize", "dequantize", "probabilities", "predictions", "clipped"]


def _quantize_column(values: np.ndarray, q: dict[str, Any]) -> np.ndarray:
    """Concrete ML's UniformQuantizer.quant (round half to even, then clip unless told not to)."""
    qvalues = np.rint(values / np.asarray(q["scale"]) + np.asarray(q["zero_point"]))
    if not q["no_clipping"]:
        low = -q["offset"] + (1 if q["is_narrow"] else 0)
        qvalues = qvalues.clip(low, 2 ** q["n_bits"] - 1 - q["offset"])
    return qvalues.astype(np.int64)


def _clipped_column(values: np.ndarray, q: dict[str, Any]) -> np.ndarray:
    """Where `_quantize_column` would clip: the value lies outside the range the circuit was compiled for."""
    if q["no_clipping"]:
        return np.zeros(np.shape(values), dtype=bool)
    qvalues = np.rint(values / np.asarray(q["scale"]) + np.asarray(q["zero_point"]))
    low = -q["offset"] + (1 if q["is_narrow"] else 0)
    return (qvalues < low) | (qvalues > 2 ** q["n_bits"] - 1 - q["offset"])


def clipped(rows: np.ndarray, quantizers: Sequence[dict[str, Any]]) -> np.ndarray:
    """(n, features) True where quantizing would clip the value (Concrete ML clips silently)."""
    if len(quantizers) == 1:
        return _clipped_column(rows, quantizers[0])
    return np.stack([_clipped_column(rows[:, j], q) for j, q in enumerate(quantizers)], axis=1)


def quantize(rows: np.ndarray, quantizers: Sequence[dict[str, Any]]) -> np.ndarray:
    """Rows (n, features) as the circuit's integer inputs: one quantizer per feature, or one for all."""
    if len(quantizers) == 1:
        return _quantize_column(rows, quantizers[0])
    return np.stack([_quantize_column(rows[:, j], q) for j, q in enumerate(quantizers)], axis=1)


def dequantize(q_outputs: np.ndarray, quantizer: dict[str, Any], offset: float = 0.0) -> np.ndarray:
    """Concrete ML's UniformQuantizer.dequant (a scale and zero point each, or one per output), plus the
    constant some graphs add in the clear."""
    scale, zero_point = np.asarray(quantizer["scale"]), np.asarray(quantizer["zero_point"], dtype=np.float64)
    return scale * (q_outputs - zero_point) + offset


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probabilities(scores: np.ndarray, activation: str) -> np.ndarray:
    """Class probabilities (n, classes) from a classifier's dequantized outputs (n, outputs).

    `none`: the outputs are the probabilities (decision trees, forests). `logistic`: one output is
    p of the second class; two get a sigmoid each; more get a softmax (as Concrete ML reads them)."""
    if activation == "none":
        return scores
    if activation != "logistic":
        raise ValueError(f"unknown activation {activation!r}")
    if scores.shape[1] == 1:
        p = _sigmoid(scores[:, 0])
        return np.stack([1.0 - p, p], axis=1)
    if scores.shape[1] == 2:
        return _sigmoid(scores)
    return _softmax(scores)


def predictions(scores: np.ndarray, task: str, activation: str, classes: Sequence[Any] | None) -> np.ndarray:
    """What the model's `predict` returns: class labels (the most probable), or the regression values."""
    if task == "regressor":
        return scores[:, 0] if scores.shape[1] == 1 else scores
    index = np.argmax(probabilities(scores, activation), axis=1)
    return np.asarray(classes)[index]
