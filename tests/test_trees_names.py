"""trees-seal names its features: a model fitted on a DataFrame (scikit-learn Pipeline, XGBoost JSON, LightGBM
text) reports `feature_names`, and Client.predict chooses a DataFrame's columns by them."""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest
import xgboost
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from test_client_retry import serve

from sei_framework import Client, Deployment, InvalidRequest
from sei_framework.keys import Keyring
from sei_framework.serving import ScoringService


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Three tree models fitted on one DataFrame, as their libraries save them, in one in-process service."""
    import joblib

    folder = tmp_path_factory.mktemp("trees-names")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.rename(columns=lambda name: name.replace(" ", "_"))  # LightGBM rewrites spaces in names
    tree = make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=3, random_state=0)).fit(X, y)
    joblib.dump(tree, folder / "tree.joblib")
    xgb = xgboost.XGBClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y)
    xgb.save_model(folder / "xgb.json")
    xgb.save_model(folder / "xgb.ubj")
    lgb = lightgbm.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1, random_state=0).fit(X, y)
    lgb.booster_.save_model(folder / "lgb.txt")
    lightgbm.LGBMClassifier(n_estimators=2, num_leaves=3, verbose=-1).fit(X.to_numpy(), y).booster_.save_model(folder / "anon.txt")
    config = {
        "name": "names",
        "models": [{"name": name, "adapter": "trees-seal", "path": file}
                   for name, file in [("tree", "tree.joblib"), ("xgb", "xgb.json"), ("ubj", "xgb.ubj"), ("lgb", "lgb.txt"), ("anon", "anon.txt")]],
    }  # fmt: skip
    (folder / "names.yaml").write_text(yaml.safe_dump(config))
    service = ScoringService.from_build(Deployment.from_file(folder / "names.yaml").build(folder / "build").path)
    return service, tree, X


def test_library_files_and_fitted_models_keep_their_names(served):
    service, _, X = served
    models = service.describe()["models"]
    for name in ("tree", "xgb", "ubj", "lgb"):
        assert models[name]["feature_names"] == list(X.columns), name
    assert "feature_names" not in models["anon"]  # LightGBM's generated Column_i are no names


def _handler(service: ScoringService):
    """The in-process service behind test_client_retry.serve's HTTP server."""

    def handle(n: int, body: bytes):
        answer, status = service.handle(body)
        return status, answer

    return handle


def test_client_chooses_columns_by_name(served, tmp_path):
    service, tree, X = served
    rows = X.iloc[::25]
    with serve(_handler(service)) as (uri, _):
        client = Client(uri, keyring=Keyring(tmp_path / "keys"))
        result = client.predict("tree", rows[rows.columns[::-1]])
        assert (np.asarray(result.predictions) == tree.predict(rows)).all()
        assert result.columns == list(X.columns)
        with pytest.raises(InvalidRequest, match="missing 'mean_radius'") as caught:
            client.predict("tree", rows.drop(columns="mean_radius"))
        assert caught.value.code == "wrong_features"


def test_client_sends_missing_values_as_the_library_routes_them(served, tmp_path):
    """NaN is a missing value for a tree (each split's default direction): Client.predict sends it; an
    infinity is still refused before anything is encrypted."""
    service, tree, X = served
    rows = X.iloc[::40].copy()
    used = sorted({X.columns[i] for i in tree[-1].tree_.feature if i >= 0})  # the features the tree splits on
    for i, name in enumerate(used):
        rows.iloc[i::2, rows.columns.get_loc(name)] = np.nan
    with serve(_handler(service)) as (uri, _):
        client = Client(uri, keyring=Keyring(tmp_path / "keys"))
        result = client.predict("tree", rows)
        assert (np.asarray(result.predictions) == tree.predict(rows)).all()
        rows.iloc[1, 0] = np.inf
        with pytest.raises(InvalidRequest, match="row 1, column 'mean_radius': every value must be a number or NaN") as caught:
            client.predict("tree", rows)
        assert caught.value.code == "invalid_rows"
