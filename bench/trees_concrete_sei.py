"""SEI's concrete-ml adapter on the tree models of bench/trees.py, run by the Python of the concrete-ml plugin's
environment (make concrete): builds a service of the model files bench/concrete_reference.py wrote and times
what the service spends per row (`ScoringService.handle`, one row per request), as bench/concrete.py does.

    SEI_CONCRETE_PYTHON=.venv-concrete-build/bin/python .venv-concrete/bin/python -m bench.trees_concrete_sei OUT ROWS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

from bench.concrete import LIMITS, timed_requests


def main(out: Path, rows: int) -> None:
    from sei_framework import Deployment
    from sei_framework.serving import ScoringService

    ref = json.loads((out / "reference.json").read_text())
    models = [{"name": name, "adapter": "concrete-ml", "path": str(out / f"{name}.joblib"),
               "options": {"calibration_data": str(out / "calibration.npy"), **figures["options"]}}
              for name, figures in ref.items()]
    (out / "sei-trees.yaml").write_text(yaml.safe_dump({"name": "bench-trees", "models": models, "limits": LIMITS}))
    build = Deployment.from_file(out / "sei-trees.yaml").build(out / "build-trees")
    service = ScoringService.from_build(build.path)
    X = np.load(out / "test_X.npy")[:rows]
    results = {}
    for name in ref:
        got = timed_requests(service, name, X, 1)
        results[name] = {k: v for k, v in got.items() if k != "predictions"}
        print(name, json.dumps(results[name]), flush=True)
    (out / "sei_concrete.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
