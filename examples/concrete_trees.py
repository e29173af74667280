"""A random forest served encrypted with the concrete-ml adapter, end to end (`make example-concrete`).

1. The model owner trains a forest in Concrete ML's environment ($SEI_CONCRETE_PYTHON: its pinned
   scikit-learn) and keeps the training rows as calibration data.
2. SEI builds the service: Concrete ML compiles the forest (trees summed under encryption), the build
   checks how often the compiled forest agrees with the original, and the local target serves it
   in azmlinfsrv.
3. A client that knows only the endpoint makes its TFHE keys, publishes them once, encrypts five
   held-out rows, and decrypts the predictions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import yaml

from sei_framework import Build, Deployment, Keyring

TRAIN = textwrap.dedent(
    """
    import sys, joblib, numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    out = sys.argv[1]
    X, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:400], order[400:]
    forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X[train], y[train])
    joblib.dump(forest, f"{out}/forest.joblib")
    np.save(f"{out}/calibration.npy", X[train])
    np.save(f"{out}/rows.npy", X[test][:5])
    np.save(f"{out}/plaintext.npy", forest.predict(X[test][:5]))
    """
)


def main() -> None:
    compiler = os.environ.get("SEI_CONCRETE_PYTHON")
    if not compiler:
        sys.exit("set SEI_CONCRETE_PYTHON to the python of Concrete ML's environment (make example-concrete does)")
    with tempfile.TemporaryDirectory(prefix="sei-trees-") as folder:
        work = Path(folder)
        subprocess.run([compiler, "-c", TRAIN, str(work)], check=True)
        config = {
            "name": "trees",
            "models": [{"name": "forest", "adapter": "concrete-ml", "path": "forest.joblib",
                        "options": {"calibration_data": "calibration.npy"}}],  # fmt: skip
            "key_transport": {"name": "local-dir", "options": {"path": "keys"}},
            "deploy": {"target": "local", "options": {"state_dir": "state"}},
            # TFHE evaluation keys are about 75 MB, and about 0.5 GB once expanded by the service
            "limits": {"max_public_key_mb": 128, "key_cache_mb": 4096},
        }
        (work / "trees.yaml").write_text(yaml.safe_dump(config))
        deployment = Deployment.from_file(work / "trees.yaml")
        start = time.perf_counter()
        endpoint = deployment.deploy(work / "build")
        agreement = Build.open(work / "build").manifest["models"][0]["metadata"]["calibration"]["agreement"]
        print(f"built and serving in {time.perf_counter() - start:.0f} s; compiled forest agrees with the original "
              f"on {agreement:.1%} of the calibration rows")  # fmt: skip
        try:
            client = deployment.client(endpoint, keyring=Keyring(work / "client-keys"))
            rows, plaintext = np.load(work / "rows.npy"), np.load(work / "plaintext.npy")
            start = time.perf_counter()
            prediction = client.predict("forest", rows)
            print(f"encrypted predictions {prediction.predictions.tolist()} in {time.perf_counter() - start:.0f} s "
                  f"(keys made and published once); plaintext {plaintext.tolist()}")  # fmt: skip
            print("probabilities", np.round(prediction.probabilities, 3).tolist())
        finally:
            deployment.delete()


if __name__ == "__main__":
    main()
