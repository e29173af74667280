"""Build time: what concrete-ml refuses, and why, before anything is served."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import concrete_model, write_config

from sei_framework import Deployment, SeiError


def build(tmp_path, models, **extra):
    return Deployment.from_file(write_config(tmp_path, models, **extra)).build(tmp_path / "build")


def test_a_family_concrete_ml_does_not_serve_is_refused_by_name(trained, tmp_path):
    with pytest.raises(SeiError, match="KNeighborsClassifier is not a family this adapter compiles .*DecisionTreeClassifier"):
        build(tmp_path, [concrete_model(trained, "neighbors")])
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(
    "payload",
    [b"cos\nsystem\n(Vtouch {marker}\ntR.", b"cbuiltins\nexec\n(Vopen('{marker}', 'w')\ntR."],
    ids=["os.system", "builtins.exec"],
)
def test_a_model_file_that_runs_code_is_refused_before_it_runs(trained, tmp_path, payload):
    """compile_model.py unpickles through the allow-list: a REDUCE of os.system never runs."""
    marker = tmp_path / "ran"
    model = concrete_model(trained, "tree")
    model["path"] = str(tmp_path / "gadget.joblib")
    (tmp_path / "gadget.joblib").write_bytes(payload.replace(b"{marker}", str(marker).encode()))
    with pytest.raises(SeiError, match=r"untrusted types: (os\.system|builtins\.exec)"):
        build(tmp_path, [model])
    assert not marker.exists()


def test_calibration_data_of_another_shape_is_refused(trained, tmp_path):
    rows = tmp_path / "nine.npy"
    np.save(rows, np.load(trained.calibration)[:, :9])
    model = concrete_model(trained, "tree")
    model["options"]["calibration_data"] = str(rows)
    with pytest.raises(SeiError, match="calibration data has 9 columns; the model takes 10 features"):
        build(tmp_path, [model])


def test_a_model_that_loses_too_much_to_quantisation_is_refused_with_both_figures(trained, tmp_path):
    with pytest.raises(SeiError, match=r"at 2 bits agrees with the original model on \d+\.\d% of the 400 calibration rows, under min_agreement \(95\.0%\)"):
        build(tmp_path, [concrete_model(trained, "logistic", n_bits=2)])


def test_keys_larger_than_the_service_accepts_are_refused_naming_the_limit(trained, tmp_path):
    """A decision tree's evaluation keys are about 75 MB: over the default max_public_key_mb."""
    with pytest.raises(SeiError, match=r"public keys are \d+\.\d MB as received, over limits.max_public_key_mb \(32\); set limits.max_public_key_mb to at least \d+"):
        build(tmp_path, [concrete_model(trained, "tree")], limits={"max_request_mb": 160})
    assert not (tmp_path / "build").exists()  # (the key cache's share: tests/test_model_limits.py)


def test_a_folder_fhemodeldev_did_not_save_is_refused(trained, tmp_path):
    folder = tmp_path / "some-folder"
    folder.mkdir()
    model = concrete_model(trained, "tree")
    model["path"] = str(folder)
    with pytest.raises(SeiError, match="some-folder is not a folder FHEModelDev saved"):
        build(tmp_path, [model])


def test_a_compiled_forest_that_sums_its_trees_in_the_clear_is_refused(trained, tmp_path):
    """Each client would decrypt every tree's output: far more of the model than one prediction."""
    model = concrete_model(trained, "tree")
    model["path"] = str(trained.folder / "compiled_forest")
    with pytest.raises(SeiError, match="sums its trees in the clear, so each client would decrypt every tree's output"):
        build(tmp_path, [model])
