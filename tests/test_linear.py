"""fold() must reproduce scikit-learn's own decision_function / predict / predict_proba."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import is_classifier
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_digits, load_iris, make_classification, make_regression
from sklearn.decomposition import PCA, IncrementalPCA, TruncatedSVD
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import (
    BayesianRidge,
    ElasticNet,
    HuberRegressor,
    Lars,
    Lasso,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    MultiTaskLasso,
    PassiveAggressiveClassifier,
    Perceptron,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    SGDClassifier,
    SGDOneClassSVM,
    SGDRegressor,
)
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import SVC, LinearSVC, LinearSVR

from sei_adapter_sklearn.linear import LinearModel, NotLinearError, fold

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # PassiveAggressive* are deprecated in 1.8+
]

RTOL = 1e-8


def logreg(**params: Any) -> LogisticRegression:
    return LogisticRegression(max_iter=2000, **params)


# --- data -----------------------------------------------------------------------------------


def _skewed(X: np.ndarray) -> np.ndarray:
    """Give features different offsets and scales so scalers have work to do."""
    return X * np.linspace(0.5, 40.0, X.shape[1]) + np.linspace(-20.0, 100.0, X.shape[1])


@cache
def data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Small deterministic datasets by name."""
    if name == "binary":
        X, y = make_classification(200, 8, n_informative=5, random_state=0)
        return _skewed(X), y
    if name == "multi":
        X, y = make_classification(300, 8, n_informative=6, n_classes=4, random_state=1)
        return _skewed(X), y
    if name == "strings":
        X, y = load_iris(return_X_y=True)
        return X, np.array(["setosa", "versicolor", "virginica"])[y]
    if name == "bools":
        X, y = make_classification(150, 5, random_state=2)
        return X, y.astype(bool)
    if name == "digits":
        return load_digits(return_X_y=True)
    if name == "regression":
        X, y = make_regression(150, 6, noise=5.0, random_state=3)
        return _skewed(X), y
    if name == "multioutput":
        X, y = make_regression(150, 6, n_targets=3, noise=5.0, random_state=4)
        return _skewed(X), y
    if name == "column":
        X, y = make_regression(120, 5, noise=1.0, random_state=5)
        return X, y.reshape(-1, 1)
    if name == "diabetes":
        return load_diabetes(return_X_y=True)
    raise KeyError(name)


def fitted(estimator: Any, name: str) -> Any:
    X, y = data(name)
    return estimator.fit(X, y)


def assert_reproduces(estimator: Any, X: np.ndarray) -> LinearModel:
    """The folded model's scores, predictions and probabilities equal sklearn's."""
    model = fold(estimator)
    scores = model.scores(X)
    if is_classifier(estimator):
        expected = np.asarray(estimator.decision_function(X))
        got = scores[:, 0] if expected.ndim == 1 else scores
    else:
        expected = np.asarray(estimator.predict(X))
        got = model.predict(scores)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())
    if is_classifier(estimator):
        np.testing.assert_array_equal(model.predict(scores), estimator.predict(X))
    if model.proba is not None:
        np.testing.assert_allclose(model.predict_proba(scores), estimator.predict_proba(X), rtol=RTOL, atol=1e-12)
    return model


# --- classifiers ----------------------------------------------------------------------------

CLASSIFIERS = [
    # (id, estimator factory, dataset, decision, proba)
    ("logreg-binary", lambda: logreg(), "binary", "sign", "sigmoid"),
    ("logreg-multinomial", lambda: logreg(), "multi", "argmax", "softmax"),
    ("logreg-no-intercept", lambda: logreg(fit_intercept=False), "binary", "sign", "sigmoid"),
    ("logreg-strings", lambda: logreg(), "strings", "argmax", "softmax"),
    ("logreg-bools", lambda: LogisticRegression(), "bools", "sign", "sigmoid"),
    ("logreg-cv", lambda: LogisticRegressionCV(Cs=2, cv=3, max_iter=2000), "multi", "argmax", "softmax"),
    ("ovr-logreg", lambda: OneVsRestClassifier(logreg()), "multi", "argmax", "ovr-normalized"),
    ("ovr-logreg-binary", lambda: OneVsRestClassifier(logreg()), "binary", "sign", "sigmoid"),
    ("ovr-liblinear", lambda: OneVsRestClassifier(logreg(solver="liblinear")), "strings", "argmax", "ovr-normalized"),
    ("ovr-linearsvc", lambda: OneVsRestClassifier(LinearSVC()), "multi", "argmax", None),
    ("linearsvc-binary", lambda: LinearSVC(), "binary", "sign", None),
    ("linearsvc-multi", lambda: LinearSVC(), "multi", "argmax", None),
    ("linearsvc-crammer-singer", lambda: LinearSVC(multi_class="crammer_singer"), "multi", "argmax", None),
    ("linearsvc-strings", lambda: LinearSVC(fit_intercept=False), "strings", "argmax", None),
    ("sgd-hinge-binary", lambda: SGDClassifier(random_state=0), "binary", "sign", None),
    ("sgd-hinge-multi", lambda: SGDClassifier(random_state=0), "multi", "argmax", None),
    ("sgd-log-binary", lambda: SGDClassifier(loss="log_loss", random_state=0), "binary", "sign", "sigmoid"),
    ("sgd-log-multi", lambda: SGDClassifier(loss="log_loss", random_state=0), "multi", "argmax", "ovr-normalized"),
    ("sgd-modified-huber-binary", lambda: SGDClassifier(loss="modified_huber", random_state=0), "binary", "sign", "modified-huber"),
    ("sgd-modified-huber-multi", lambda: SGDClassifier(loss="modified_huber", random_state=0), "multi", "argmax", "modified-huber"),
    ("ridge-classifier-binary", lambda: RidgeClassifier(), "binary", "sign", None),
    ("ridge-classifier-multi", lambda: RidgeClassifier(), "multi", "argmax", None),
    ("ridge-classifier-cv", lambda: RidgeClassifierCV(), "strings", "argmax", None),
    ("perceptron-binary", lambda: Perceptron(random_state=0), "binary", "sign", None),
    ("perceptron-multi", lambda: Perceptron(random_state=0), "multi", "argmax", None),
    ("passive-aggressive-binary", lambda: PassiveAggressiveClassifier(random_state=0), "binary", "sign", None),
    ("passive-aggressive-multi", lambda: PassiveAggressiveClassifier(random_state=0), "multi", "argmax", None),
    ("lda-binary", lambda: LinearDiscriminantAnalysis(), "binary", "sign", "sigmoid"),
    ("lda-multi", lambda: LinearDiscriminantAnalysis(), "multi", "argmax", "softmax"),
    ("svc-linear-binary", lambda: SVC(kernel="linear"), "binary", "sign", None),
    ("grid-search", lambda: GridSearchCV(logreg(), {"C": [0.1, 1.0]}, cv=3), "multi", "argmax", "softmax"),
]


@pytest.mark.parametrize(
    ("factory", "dataset", "decision", "proba"), [pytest.param(*c[1:], id=c[0]) for c in CLASSIFIERS]
)
def test_classifier_folds_exactly(factory: Any, dataset: str, decision: str, proba: str | None) -> None:
    estimator = fitted(factory(), dataset)
    model = assert_reproduces(estimator, data(dataset)[0])
    assert (model.kind, model.decision, model.proba) == ("classifier", decision, proba)
    assert model.classes == estimator.classes_.tolist()


def test_string_labels_come_back_as_labels() -> None:
    estimator = fitted(logreg(), "strings")
    model = fold(estimator)
    assert set(model.predict(model.scores(data("strings")[0]))) == {"setosa", "versicolor", "virginica"}
    assert all(type(c) is str for c in model.classes)


def test_no_intercept_gives_zero() -> None:
    model = fold(fitted(LinearSVC(fit_intercept=False), "binary"))
    assert model.intercept.tolist() == [0.0]


# --- regressors -----------------------------------------------------------------------------

REGRESSORS = [
    ("linear", lambda: LinearRegression(), "regression", "identity"),
    ("ridge", lambda: Ridge(alpha=2.0), "regression", "identity"),
    ("ridge-no-intercept", lambda: Ridge(fit_intercept=False), "regression", "identity"),
    ("lasso", lambda: Lasso(alpha=0.5), "regression", "identity"),
    ("elasticnet", lambda: ElasticNet(alpha=0.5), "regression", "identity"),
    ("linearsvr", lambda: LinearSVR(random_state=0, max_iter=5000), "diabetes", "identity"),
    ("sgd", lambda: SGDRegressor(random_state=0), "diabetes", "identity"),
    ("huber", lambda: HuberRegressor(max_iter=500), "diabetes", "identity"),
    ("bayesian-ridge", lambda: BayesianRidge(), "regression", "identity"),
    ("lars", lambda: Lars(), "diabetes", "identity"),
    ("linear-multi", lambda: LinearRegression(), "multioutput", "multioutput"),
    ("ridge-multi", lambda: Ridge(), "multioutput", "multioutput"),
    ("lasso-multi", lambda: Lasso(alpha=0.5), "multioutput", "multioutput"),
    ("elasticnet-multi", lambda: ElasticNet(alpha=0.5), "multioutput", "multioutput"),
    ("multitask-lasso", lambda: MultiTaskLasso(alpha=0.5), "multioutput", "multioutput"),
    ("linear-column-target", lambda: LinearRegression(), "column", "multioutput"),
    ("ridge-column-target", lambda: Ridge(), "column", "identity"),
]


@pytest.mark.parametrize(("factory", "dataset", "decision"), [pytest.param(*c[1:], id=c[0]) for c in REGRESSORS])
def test_regressor_folds_exactly(factory: Any, dataset: str, decision: str) -> None:
    estimator = fitted(factory(), dataset)
    model = assert_reproduces(estimator, data(dataset)[0])
    assert (model.kind, model.decision, model.proba, model.classes) == ("regressor", decision, None, None)
    assert model.predict_proba(model.scores(data(dataset)[0][:2])) is None


# --- pipelines ------------------------------------------------------------------------------

PIPELINES = [
    ("standard", lambda: make_pipeline(StandardScaler(), logreg()), "multi"),
    ("standard-no-mean", lambda: make_pipeline(StandardScaler(with_mean=False), LinearSVC()), "multi"),
    ("standard-no-std", lambda: make_pipeline(StandardScaler(with_std=False), Ridge()), "regression"),
    ("standard-off", lambda: make_pipeline(StandardScaler(with_mean=False, with_std=False), Ridge()), "regression"),
    ("minmax", lambda: make_pipeline(MinMaxScaler((-1, 2)), logreg()), "binary"),
    ("maxabs", lambda: make_pipeline(MaxAbsScaler(), SGDClassifier(loss="log_loss", random_state=0)), "multi"),
    ("robust", lambda: make_pipeline(RobustScaler(), Lasso(alpha=0.1)), "multioutput"),
    (
        "robust-partial",
        lambda: make_pipeline(RobustScaler(with_centering=False), RobustScaler(with_scaling=False), Ridge()),
        "regression",
    ),
    ("pca", lambda: make_pipeline(StandardScaler(), PCA(5), logreg()), "multi"),
    ("pca-whiten", lambda: make_pipeline(PCA(whiten=True), LinearRegression()), "multioutput"),
    ("incremental-pca", lambda: make_pipeline(IncrementalPCA(4, whiten=True), RidgeClassifier()), "binary"),
    ("truncated-svd", lambda: make_pipeline(TruncatedSVD(4, random_state=0), Perceptron(random_state=0)), "multi"),
    ("digits", lambda: make_pipeline(MinMaxScaler(), PCA(20, whiten=True), logreg()), "digits"),
    (
        "passthrough-and-none",
        lambda: Pipeline([("a", "passthrough"), ("scale", StandardScaler()), ("b", None), ("clf", LinearSVC())]),
        "binary",
    ),
    (
        "nested",
        lambda: Pipeline(
            [
                ("prep", make_pipeline(StandardScaler(), make_pipeline(PCA(3), MaxAbsScaler()))),
                ("clf", make_pipeline(RobustScaler(), logreg())),
            ]
        ),
        "strings",
    ),
    ("ovr-of-pipeline", lambda: OneVsRestClassifier(make_pipeline(StandardScaler(), LogisticRegression())), "multi"),
    ("pipeline-of-ovr", lambda: make_pipeline(MinMaxScaler(), OneVsRestClassifier(LinearSVC())), "multi"),
    (
        "pipeline-of-search",
        lambda: make_pipeline(StandardScaler(), GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=3)),
        "regression",
    ),
]


@pytest.mark.parametrize(("factory", "dataset"), [pytest.param(*c[1:], id=c[0]) for c in PIPELINES])
def test_pipeline_folds_exactly(factory: Any, dataset: str) -> None:
    estimator = fitted(factory(), dataset)
    assert_reproduces(estimator, data(dataset)[0])


def test_pipeline_names_its_steps() -> None:
    model = fold(fitted(make_pipeline(StandardScaler(), PCA(3), LogisticRegression()), "multi"))
    assert model.estimator == "Pipeline(StandardScaler, PCA, LogisticRegression)"
    assert model.n_features == 8 and model.n_outputs == 4
    ovr = fold(fitted(OneVsRestClassifier(LogisticRegression()), "multi"))
    assert ovr.estimator == "OneVsRestClassifier(LogisticRegression)"


# --- refusals -------------------------------------------------------------------------------


def test_non_linear_pipeline_step_is_named() -> None:
    pipe = fitted(Pipeline([("poly", PolynomialFeatures()), ("clf", logreg())]), "binary")
    with pytest.raises(NotLinearError) as err:
        fold(pipe)
    assert str(err.value) == "pipeline step 'poly' (PolynomialFeatures) is not linear; SEI can only serve affine models"


def test_nested_step_path_is_named() -> None:
    inner = Pipeline([("scale", StandardScaler()), ("norm", Normalizer())])
    pipe = fitted(Pipeline([("prep", inner), ("clf", Ridge())]), "regression")
    with pytest.raises(NotLinearError, match=r"pipeline step 'prep__norm' \(Normalizer\) is not linear"):
        fold(pipe)


@pytest.mark.parametrize(
    ("factory", "dataset", "message"),
    [
        (lambda: KNeighborsClassifier(), "binary", r"^KNeighborsClassifier is not linear; SEI can only serve affine"),
        (lambda: RandomForestClassifier(n_estimators=3), "binary", r"^RandomForestClassifier is not linear"),
        (lambda: SVC(kernel="rbf"), "binary", r"^SVC is not linear"),
        (lambda: SVC(kernel="linear"), "strings", r"SVC: decision_function .* SEI can only serve affine models"),
        (lambda: SVC(kernel="linear"), "multi", r"SVC has 6 score rows for 4 classes, which is not one-vs-rest"),
        (lambda: PoissonRegressor(), "diabetes", r"PoissonRegressor: predict is not X @ coef_"),
        (
            lambda: make_pipeline(StandardScaler(), KNeighborsClassifier()),
            "binary",
            r"^pipeline step 'kneighborsclassifier' \(KNeighborsClassifier\) is not linear",
        ),
        (lambda: make_pipeline(MinMaxScaler(clip=True), Ridge()), "regression", r"\(MinMaxScaler\) clips"),
        (lambda: make_pipeline(MaxAbsScaler(clip=True), Ridge()), "regression", r"\(MaxAbsScaler\) clips"),
        (lambda: make_pipeline(StandardScaler(), "passthrough"), "regression", r"Pipeline has no final estimator"),
        (lambda: OneVsRestClassifier(SVC()), "multi", r"^OneVsRestClassifier cannot be folded: SVC is not linear"),
        (lambda: SGDOneClassSVM(), "binary", r"SGDOneClassSVM is neither a classifier nor a regressor"),
        (lambda: KMeans(2, n_init=1, random_state=0), "binary", r"^KMeans is not linear"),
        (lambda: GridSearchCV(Ridge(), {"alpha": [1.0]}, cv=2, refit=False), "regression", r"refit=False"),
    ],
)
def test_refuses_non_linear(factory: Any, dataset: str, message: str) -> None:
    with pytest.raises(NotLinearError, match=message):
        fold(fitted(factory(), dataset))


def test_refuses_column_transformer_step() -> None:
    columns = ColumnTransformer([("scale", StandardScaler(), [0, 1])], remainder="passthrough")
    pipe = fitted(Pipeline([("columns", columns), ("clf", logreg())]), "binary")
    with pytest.raises(NotLinearError, match=r"pipeline step 'columns' \(ColumnTransformer\) is not linear"):
        fold(pipe)


@pytest.mark.parametrize(
    "estimator",
    [LogisticRegression(), make_pipeline(StandardScaler(), Ridge()), OneVsRestClassifier(LinearSVC())],
    ids=["estimator", "pipeline", "ovr"],
)
def test_refuses_unfitted(estimator: Any) -> None:
    with pytest.raises(NotLinearError, match="is not fitted"):
        fold(estimator)


def test_refuses_non_estimator() -> None:
    with pytest.raises(NotLinearError, match="dict is not a scikit-learn estimator"):
        fold({"coef_": [1.0]})


def test_refuses_multilabel_and_multioutput_classifiers() -> None:
    X, y = data("multi")
    Y = np.column_stack([y == 0, y == 1, y >= 2]).astype(int)
    for estimator in (OneVsRestClassifier(logreg()), RidgeClassifier(), MultiOutputClassifier(logreg())):
        with pytest.raises(NotLinearError, match="multi-label or multi-output"):
            fold(estimator.fit(X, Y))


# --- LinearModel ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "dataset"),
    [
        (lambda: logreg(), "strings"),
        (lambda: LogisticRegression(), "bools"),
        (lambda: OneVsRestClassifier(LogisticRegression()), "multi"),
        (lambda: Ridge(), "multioutput"),
        (lambda: SGDRegressor(random_state=0), "diabetes"),
    ],
)
def test_dict_round_trip_through_json(factory: Any, dataset: str) -> None:
    model = fold(fitted(factory(), dataset))
    restored = LinearModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored == model
    X = data(dataset)[0][:20]
    np.testing.assert_array_equal(restored.predict(restored.scores(X)), model.predict(model.scores(X)))


def test_fields_are_normalised_and_read_only() -> None:
    model = fold(fitted(Ridge(), "regression"))
    assert model.coef.shape == (1, 6) and model.intercept.shape == (1,)
    assert model.coef.dtype == np.float64 and not model.coef.flags.writeable
    with pytest.raises(ValueError):
        model.coef[0, 0] = 1.0


def test_one_dimensional_scores() -> None:
    binary = fold(fitted(LogisticRegression(), "bools"))
    X = data("bools")[0][:5]
    flat = binary.scores(X)[:, 0]
    np.testing.assert_array_equal(binary.predict(flat), binary.predict(binary.scores(X)))
    multi = fold(fitted(LinearSVC(), "strings"))
    row = multi.scores(data("strings")[0][:1])
    assert multi.predict(row[0]).tolist() == multi.predict(row).tolist()
    assert multi.scores(data("strings")[0][0]).shape == (1, 3)
    with pytest.raises(ValueError, match="do not fit 3 outputs"):
        multi.predict(np.zeros(4))
    with pytest.raises(ValueError, match="X has 3 features"):
        multi.scores(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "change",
    [
        {"intercept": [0.0, 1.0]},
        {"decision": "argmax"},
        {"kind": "regressor"},
        {"proba": "softmax"},
        {"classes": [0, 1, 2]},
        {"format": "something-else/9"},
    ],
)
def test_from_dict_rejects_inconsistent_descriptions(change: dict[str, Any]) -> None:
    good = fold(fitted(LogisticRegression(), "binary")).to_dict()
    with pytest.raises(ValueError):
        LinearModel.from_dict({**good, **change})


def test_from_dict_rejects_missing_field() -> None:
    good = fold(fitted(LogisticRegression(), "binary")).to_dict()
    del good["coef"]
    with pytest.raises(ValueError, match="lacks 'coef'"):
        LinearModel.from_dict(good)


finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(w=arrays(np.float64, 4, elements=finite), b=finite, X=arrays(np.float64, (6, 4), elements=finite))
def test_sign_equals_argmax_of_zero_and_score(w: np.ndarray, b: float, X: np.ndarray) -> None:
    """A binary sign model is the two-class argmax model with a zero first row."""
    sign = LinearModel(w, [b], "classifier", ["no", "yes"], "sign", "sigmoid", "test")
    two = LinearModel(np.vstack([np.zeros(4), w]), [0.0, b], "classifier", ["no", "yes"], "argmax", "softmax", "test")
    np.testing.assert_array_equal(sign.predict(sign.scores(X)), two.predict(two.scores(X)))
    np.testing.assert_allclose(sign.predict_proba(sign.scores(X)), two.predict_proba(two.scores(X)), atol=1e-12)
    assert LinearModel.from_dict(json.loads(json.dumps(sign.to_dict()))) == sign


@settings(max_examples=15, deadline=None)
@given(
    scale=arrays(np.float64, 3, elements=st.floats(1e-3, 1e3)),
    offset=arrays(np.float64, 3, elements=st.floats(-1e3, 1e3)),
)
def test_scaled_pipeline_folds_for_any_feature_scale(scale: np.ndarray, offset: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)) * scale + offset
    y = (X / scale) @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=60)
    pipe = make_pipeline(StandardScaler(), PCA(whiten=True), Ridge()).fit(X, y)
    model = fold(pipe)
    np.testing.assert_allclose(model.predict(model.scores(X)), pipe.predict(X), rtol=1e-7, atol=1e-7 * np.abs(y).max())


class _TanhLogistic(LogisticRegression):
    """Looks linear (has coef_) but squashes its scores: the probe must catch it."""

    def decision_function(self, X: Any) -> np.ndarray:
        return np.tanh(super().decision_function(X))


class _BrokenLogistic(LogisticRegression):
    def decision_function(self, X: Any) -> np.ndarray:
        raise AttributeError("lost in unpickling")


def test_probe_refuses_estimator_that_only_looks_linear() -> None:
    with pytest.raises(NotLinearError, match=r"_TanhLogistic: decision_function is not X @ coef_\.T \+ intercept_"):
        fold(fitted(_TanhLogistic(), "binary"))
    with pytest.raises(NotLinearError, match=r"decision_function failed on probe inputs \(AttributeError: lost"):
        fold(fitted(_BrokenLogistic(), "binary"))
