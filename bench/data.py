"""The MNIST test set and the tutorial's model, as the repository ships them in data/ (data/README.md)."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATA", "MNIST_IMAGES", "MNIST_LABELS", "SEED_MODEL", "mnist_images", "mnist_labels", "seed_model"]

DATA = Path(__file__).resolve().parent.parent / "data"
SEED_MODEL = DATA / "seed-model" / "sklearn_mnist_model.pkl"
MNIST_IMAGES = DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = DATA / "mnist" / "t10k-labels-idx1-ubyte.gz"


def mnist_images() -> np.ndarray:
    """The 10,000 MNIST test images as rows of 784 pixels / 255."""
    with gzip.open(MNIST_IMAGES) as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 784) / 255.0


def mnist_labels() -> np.ndarray:
    """The 10,000 MNIST test labels."""
    with gzip.open(MNIST_LABELS) as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=8)


def seed_model() -> Any:
    """The tutorial's model, read through the sklearn adapters' model-file loader (its allow-list)."""
    from sei_adapter_sklearn.model_files import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # saved by scikit-learn 0.22.1
        return load_model(SEED_MODEL)
