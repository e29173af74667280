"""Train the small model of configs/minimal.yaml: will a customer renew, from their age and monthly price.

The features are raw units (years, and euros a month), as a user's own model's often are: the config
gives the build their range through `calibration_data`, the training rows this script writes beside
the model. Run it once before `sei deploy configs/minimal.yaml`:

    python examples/minimal_model.py          # writes examples/models/minimal.joblib and minimal-train.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["COLUMNS", "make_rows", "train"]

COLUMNS = ("age", "monthly_price")
OUT = Path(__file__).resolve().parent / "models"


def make_rows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` customers (age 18-80 years, price 5-120 euros a month) and whether they renewed."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, count).round()
    price = rng.uniform(5, 120, count).round(2)
    renewed = (0.04 * (age - 45) - 0.03 * (price - 60) + rng.normal(0, 0.8, count)) > 0
    return np.column_stack([age, price]), renewed.astype(int)


def train(out: Path = OUT) -> tuple[Path, Path]:
    """Fit the model and write it and its training rows (a CSV with a header) into `out`."""
    X, y = make_rows(2000, seed=7)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "minimal.joblib")
    np.savetxt(out / "minimal-train.csv", X, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%g")
    return out / "minimal.joblib", out / "minimal-train.csv"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write into (default: examples/models)")
    for path in train(parser.parse_args().out):
        print(f"wrote {path}")
