"""A scikit-learn model built with neither `feature_bounds` nor `calibration_data` is refused at build.

No input range is assumed any more: [-1, 1] fitted scaled features, but a model on raw units (ages,
prices) was then refused for a reason its author could not see, or served with every row refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from sei_framework import Deployment, PluginError
from sei_framework.cli import cli

BOTH = ("feature_bounds", "calibration_data")


def write(tmp_path, options: dict | None, adapter: str, path) -> str:
    model = {"name": "m", "adapter": adapter, "path": str(path), **({"options": options} if options else {})}
    config = tmp_path / "svc.yaml"
    config.write_text(yaml.safe_dump({"name": "svc", "models": [model]}))
    return str(config)


@pytest.mark.parametrize("adapter,options", [
    ("sklearn-eiserver", None), ("sklearn-packed", None), ("sklearn-packed", {"mode": "bulk"}),
    ("sklearn-eiserver", {"tolerance": 0.01, "calibration_margin": 0.2}),
])  # fmt: skip
def test_a_build_without_bounds_is_refused_naming_both_options(model_files, tmp_path, adapter, options):
    config = write(tmp_path, options, adapter, model_files["diabetes"][0])
    with pytest.raises(PluginError) as raised:
        Deployment.from_file(config).build(tmp_path / "build")
    message = raised.value.message
    assert message.startswith("neither feature_bounds nor calibration_data is set")
    assert all(option in message for option in BOTH)
    assert not (tmp_path / "build").exists()  # nothing half-built
    result = CliRunner().invoke(cli, ["build", config, "--out", str(tmp_path / "cli-build")])
    assert result.exit_code == 1 and "error: neither feature_bounds nor calibration_data is set" in result.output


@pytest.mark.parametrize("adapter", ["sklearn-eiserver", "sklearn-packed"])
def test_either_option_alone_builds(model_files, tmp_path, adapter):
    path, _, X = model_files["diabetes"]
    np.save(tmp_path / "train.npy", X)
    for options, origin in (({"feature_bounds": [-1, 1]}, "feature_bounds"), ({"calibration_data": "train.npy"}, "calibration_data")):
        build = Deployment.from_file(write(tmp_path, options, adapter, path)).build(tmp_path / "build")
        assert build.manifest["models"][0]["metadata"]["accuracy"]["bounds_from"] == origin
