"""load_model: joblib/pickle/skops files, trust checks, clear errors, one version-mismatch log line."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import Bunch

from conftest import MNIST_IMAGES, SEED_MODEL
from sei_adapter_sklearn.linear import fold
from sei_adapter_sklearn.model_files import ModelFileError, load_model



class CustomScaler(StandardScaler):
    """A user-defined type: skops must not load it unless told to trust it."""


@pytest.fixture(scope="module")
def pipeline() -> object:
    X, y = load_iris(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


def _same_predictions(a: object, b: object) -> None:
    X = load_iris(return_X_y=True)[0]
    np.testing.assert_array_equal(a.predict(X), b.predict(X))  # type: ignore[attr-defined]


@pytest.mark.parametrize("suffix", [".joblib", ".pkl", ".pickle", ".PKL"])
def test_loads_joblib_and_pickle(tmp_path: Path, pipeline: object, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    if suffix == ".pickle":
        path.write_bytes(pickle.dumps(pipeline))
    else:
        joblib.dump(pipeline, path)
    _same_predictions(load_model(path), pipeline)


def test_loads_skops_pipeline(tmp_path: Path, pipeline: object) -> None:
    path = tmp_path / "model.skops"
    sio.dump(pipeline, path)
    loaded = load_model(path)
    _same_predictions(loaded, pipeline)
    assert fold(loaded).estimator == "Pipeline(StandardScaler, LogisticRegression)"


def test_skops_trusts_reported_sklearn_and_numpy_types(tmp_path: Path) -> None:
    path = tmp_path / "bundle.skops"
    sio.dump({"meta": Bunch(n=1), "dtype": np.dtype("float32")}, path)
    assert set(sio.get_untrusted_types(file=path)) == {"sklearn.utils._bunch.Bunch", "numpy.dtype"}
    loaded = load_model(path)
    assert loaded["meta"].n == 1 and loaded["dtype"] == np.dtype("float32")  # type: ignore[index]


def test_skops_refuses_untrusted_custom_type(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "custom.skops"
    sio.dump(make_pipeline(CustomScaler(), LogisticRegression(max_iter=1000)).fit(X, y), path)
    custom = f"{CustomScaler.__module__}.CustomScaler"
    with pytest.raises(ModelFileError, match=rf"{path}.*untrusted types: {custom}"):
        load_model(path)
    assert type(load_model(path, trusted_types=[custom])[0]).__name__ == "CustomScaler"  # type: ignore[index]


def test_skops_refuses_function_reference(tmp_path: Path) -> None:
    X = load_iris(return_X_y=True)[0]
    path = tmp_path / "function.skops"
    sio.dump(FunctionTransformer(os.getcwd).fit(X), path)
    with pytest.raises(ModelFileError, match=r"untrusted types: posix\.getcwd"):
        load_model(path)


def test_skops_refuses_a_numpy_function(tmp_path: Path) -> None:
    """Library prefixes trust classes only: numpy.load is a function, not a type."""
    path = tmp_path / "numpy-function.skops"
    sio.dump(FunctionTransformer(np.load), path)
    with pytest.raises(ModelFileError, match=r"untrusted types: numpy\.load"):
        load_model(path)
    assert isinstance(load_model(path, trusted_types=["numpy.load"]), FunctionTransformer)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.joblib"
    with pytest.raises(ModelFileError, match=rf"model file {path} does not exist"):
        load_model(path)


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is not a regular file"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["model.onnx", "model"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    expected = rf"{path} has unknown extension .*expected one of .joblib, .pkl, .pickle, .skops"
    with pytest.raises(ModelFileError, match=expected):
        load_model(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("corrupt.pkl", b"not a pickle at all", "could not be unpickled"),
        ("truncated.joblib", pickle.dumps(list(range(1000)))[:50], "could not be unpickled"),
        ("empty.pickle", b"", "could not be unpickled"),
        ("corrupt.skops", b"PK\x03\x04 broken zip", "is not a valid skops file"),
    ],
)
def test_corrupt_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=rf"model file {path} {message}"):
        load_model(path)


def test_current_version_logs_nothing(tmp_path: Path, pipeline: object, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(pipeline, path)
    with caplog.at_level(logging.WARNING, logger="sei_adapter_sklearn"):
        load_model(path)
    assert caplog.records == []


def _old_pickle(estimator: object) -> tuple[bytes, str]:
    """Pickle `estimator` as if an older scikit-learn had saved it (same-length version string)."""
    current = sklearn.__version__
    old = "0" + current[1:]
    data = pickle.dumps(estimator)
    assert current.encode() in data  # pickle memoises the string shared by all three estimators
    return data.replace(current.encode(), old.encode()), old


def test_old_pipeline_logs_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "old.pkl"
    data, old = _old_pickle(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y))
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="sei_adapter_sklearn"):
        load_model(path)
        load_model(path)  # loaded again by the same process (build, then a second model): still one line
    assert [r.getMessage() for r in caplog.records] == [
        f"model file {path} was saved by scikit-learn {old} and is loaded by {sklearn.__version__}; "
        "check its predictions"
    ]


def test_seed_model_logs_once_and_folds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / SEED_MODEL.name  # a path this process has not loaded before
    path.write_bytes(SEED_MODEL.read_bytes())
    with caplog.at_level(logging.WARNING, logger="sei_adapter_sklearn"):
        model: Any = load_model(path)
    messages = [r.getMessage() for r in caplog.records if r.name == "sei_adapter_sklearn"]
    assert messages == [
        f"model file {path} was saved by scikit-learn 0.22.1 and is loaded by {sklearn.__version__}; "
        "check its predictions"
    ]
    folded = fold(model)
    assert folded.coef.shape == (10, 784) and folded.decision == "argmax"
    with gzip.open(MNIST_IMAGES) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:200] / 255.0
    scores = folded.scores(images)
    np.testing.assert_allclose(scores, model.decision_function(images), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(folded.predict(scores), model.predict(images))
    np.testing.assert_allclose(folded.predict_proba(scores), model.predict_proba(images), atol=1e-12)


class _Noisy:
    """Warns while being unpickled, like estimators with deprecated parameters do."""

    def __init__(self) -> None:
        self.level = 3

    def __setstate__(self, state: dict[str, Any]) -> None:
        warnings.warn("noisy object restored", UserWarning, stacklevel=1)
        self.__dict__.update(state)


def test_other_load_warnings_are_passed_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "noisy.pkl"
    path.write_bytes(pickle.dumps(_Noisy()))
    with pytest.warns(UserWarning, match="noisy object restored"):
        assert isinstance(load_model(path), _Noisy)
    assert caplog.records == []
