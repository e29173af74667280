"""load_model: joblib/pickle/skops files through one allow-list of exact classes (code-running gadgets
refused before they run), clear errors, one version-mismatch log line."""

from __future__ import annotations

import gc
import gzip
import logging
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
import skops.io as sio
from numpy.lib._datasource import Repository
from numpy.lib.npyio import DataSource
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler
from sklearn.utils import Bunch

from conftest import MNIST_IMAGES, SEED_MODEL
from sei_adapter_sklearn.linear import fold
from sei_adapter_sklearn.model_files import ModelFileError, allowed_types, load_model



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


def test_skops_loads_numpy_data_but_not_other_library_classes(tmp_path: Path) -> None:
    """numpy.dtype is data; a Bunch is a scikit-learn class no adapter serves, so it is refused by name."""
    path = tmp_path / "dtype.skops"
    sio.dump({"dtype": np.dtype("float32")}, path)
    assert load_model(path) == {"dtype": np.dtype("float32")}
    path = tmp_path / "bunch.skops"
    sio.dump({"meta": Bunch(n=1)}, path)
    with pytest.raises(ModelFileError, match=r"untrusted types: sklearn\.utils\._bunch\.Bunch;"):
        load_model(path)
    assert load_model(path, trusted_types=["sklearn.utils._bunch.Bunch"])["meta"].n == 1  # type: ignore[index]


def test_skops_audits_the_types_skops_itself_trusts(tmp_path: Path) -> None:
    """skops trusts every scikit-learn estimator by default; SEI only the ones its adapters serve."""
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "neighbors.skops"
    sio.dump(KNeighborsClassifier().fit(X, y), path)
    assert not any("KNeighbors" in name for name in sio.get_untrusted_types(file=path))  # skops trusts it
    with pytest.raises(ModelFileError, match=r"untrusted types: .*\.neighbors\._classification\.KNeighborsClassifier"):
        load_model(path)


def _datasource(victim: Path, kind: type = DataSource) -> Any:
    """numpy's DataSource (or Repository) whose __del__ runs shutil.rmtree(victim): the gadget."""
    gadget = kind.__new__(kind)
    gadget.__dict__.update({"_destpath": str(victim), "_istmpdest": True, "_baseurl": str(victim)})
    return gadget


def _disarm(gadget: Any) -> None:
    gadget._istmpdest = False  # this process made it: it must not delete the folder when collected


@pytest.mark.parametrize("kind", [DataSource, Repository], ids=["DataSource", "Repository"])
@pytest.mark.parametrize("suffix", [".skops", ".pkl", ".joblib"])
def test_the_datasource_gadget_is_refused_and_deletes_nothing(tmp_path: Path, kind: type, suffix: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    path = tmp_path / f"model{suffix}"
    gadget = _datasource(victim, kind)
    try:
        if suffix == ".skops":
            sio.dump({"model": gadget}, path)
        elif suffix == ".pkl":
            path.write_bytes(pickle.dumps({"model": gadget}, protocol=pickle.HIGHEST_PROTOCOL))
        else:
            joblib.dump({"model": gadget}, path)
    finally:
        _disarm(gadget)
    del gadget
    name = f"{kind.__module__}.{kind.__name__}"
    with pytest.raises(ModelFileError, match=rf"model file {path} contains untrusted types: {re.escape(name)}"):
        load_model(path)
    gc.collect()
    assert (victim / "precious.txt").read_text() == "keep me"


def test_an_array_of_objects_in_a_joblib_dump_goes_through_the_allow_list(tmp_path: Path) -> None:
    """joblib pickles an object array as a nested stream, which joblib < 1.6 unpickles unrestricted."""
    victim = tmp_path / "victim"
    victim.mkdir()
    gadget = _datasource(victim)
    path = tmp_path / "objects.joblib"
    try:
        joblib.dump({"names": np.array(["a", gadget], dtype=object)}, path)
    finally:
        _disarm(gadget)
    del gadget
    with pytest.raises(ModelFileError, match=rf"untrusted types: {re.escape(DataSource.__module__)}\.DataSource"):
        load_model(path)
    gc.collect()
    assert victim.is_dir()
    names = np.array(["petal", "sepal"], dtype=object)
    joblib.dump({"names": names}, path)
    np.testing.assert_array_equal(load_model(path)["names"], names)  # type: ignore[index]


def _global_call(module: str, name: str, *args: str) -> bytes:
    """A protocol-0 pickle that calls module.name(*args) while it is loaded (REDUCE)."""
    arguments = b"".join(b"V" + arg.encode("raw_unicode_escape") + b"\n" for arg in args)
    return f"c{module}\n{name}\n(".encode() + arguments + b"tR."


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("os", "system", lambda marker: (f"touch {marker}",)),
        ("builtins", "eval", lambda marker: (f"open({str(marker)!r}, 'w')",)),
        ("builtins", "exec", lambda marker: (f"open({str(marker)!r}, 'w')",)),
        ("subprocess", "check_call", lambda marker: (f"touch {marker}",)),
        ("numpy", "load", lambda marker: (str(marker),)),
    ],
)
@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_a_pickle_that_calls_a_function_is_refused_before_the_call(
    tmp_path: Path, module: str, name: str, args: Any, suffix: str
) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / f"model{suffix}"
    path.write_bytes(_global_call(module, name, *args(marker)))
    with pytest.raises(ModelFileError, match=rf"untrusted types: {module}\.{name};"):
        load_model(path)
    assert not marker.exists()


class _SideEffects:
    """A class whose __setstate__ writes a file: the shape of any code-running gadget."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("ran")


def test_a_class_with_setstate_side_effects_is_never_built(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(make_pipeline(StandardScaler(), _SideEffects(str(marker)))))
    with pytest.raises(ModelFileError, match=r"untrusted types: .*_SideEffects"):
        load_model(path)
    assert not marker.exists()


def test_a_dotted_name_cannot_reach_past_an_allowed_module(tmp_path: Path) -> None:
    """Protocol 4 resolves dotted names attribute by attribute: numpy + 'lib.npyio.DataSource' is refused."""
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04\x8c\x05numpy\x94\x8c\x14lib.npyio.DataSource\x94\x93\x94.")
    with pytest.raises(ModelFileError, match=r"untrusted types: numpy\.lib\.npyio\.DataSource"):
        load_model(path)


def test_the_allow_list_names_exact_classes() -> None:
    allowed = allowed_types()
    assert "sklearn.linear_model._logistic.LogisticRegression" in allowed
    assert "numpy.ndarray" in allowed and "numpy.dtype" in allowed
    assert not any(name.endswith(".") or "*" in name for name in allowed)
    for absent in ("numpy.lib._datasource.DataSource", "sklearn.utils._bunch.Bunch", "numpy.load", "builtins.eval"):
        assert absent not in allowed


@pytest.mark.parametrize(
    "estimator",
    [
        make_pipeline(StandardScaler(), PCA(2), LogisticRegression(max_iter=1000)),
        make_pipeline(MinMaxScaler(), SGDClassifier(loss="log_loss", random_state=np.random.RandomState(0))),
        OneVsRestClassifier(LogisticRegression(max_iter=1000)),
        GridSearchCV(LogisticRegression(max_iter=1000), {"C": [0.5, 1.0]}, scoring="f1_macro"),
    ],
    ids=["pca", "sgd-randomstate", "ovr", "search"],
)
@pytest.mark.parametrize("suffix", [".joblib", ".pkl", ".skops"])
def test_served_models_load_in_every_format(tmp_path: Path, estimator: Any, suffix: str) -> None:
    X, y = load_iris(return_X_y=True)
    fitted = estimator.fit(X, y)
    path = tmp_path / f"model{suffix}"
    if suffix == ".skops":
        sio.dump(fitted, path)
    elif suffix == ".pkl":
        path.write_bytes(pickle.dumps(fitted, protocol=2))  # protocol 2: bytes through _codecs.encode
    else:
        joblib.dump(fitted, path, compress=3)
    _same_predictions(load_model(path), fitted)


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
    with pytest.raises(ModelFileError, match=r"untrusted types: .*posix\.getcwd"):
        load_model(path)


def test_skops_refuses_a_numpy_function(tmp_path: Path) -> None:
    """numpy.load is a function no model needs; trusted_types can name it (and FunctionTransformer)."""
    path = tmp_path / "numpy-function.skops"
    sio.dump(FunctionTransformer(np.load), path)
    with pytest.raises(ModelFileError, match=r"untrusted types: .*numpy\.load"):
        load_model(path)
    trusted = ["numpy.load", f"{FunctionTransformer.__module__}.FunctionTransformer"]
    assert isinstance(load_model(path, trusted_types=trusted), FunctionTransformer)


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
        assert isinstance(load_model(path, trusted_types=[f"{_Noisy.__module__}._Noisy"]), _Noisy)
    assert caplog.records == []
