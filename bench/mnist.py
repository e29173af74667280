"""The adapters side by side on the tutorial's MNIST model and the MNIST test set.

Writes bench/results/mnist/{bench.json,bench.png,mnist-bench.yaml} and prints the table that the
README quotes: plain `EIServer.predict` (the tutorial's server), the sklearn-eiserver adapter,
and the packed adapter in single-row and bulk mode. The EIServer models are measured on the rows
their time budget allows; the packed adapters score all 10,000 test images.

    .venv/bin/python -m bench.mnist            # about 12 minutes on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from bench.data import SEED_MODEL, mnist_images
from sei_framework import Deployment
from sei_framework.bench import format_table, run_bench

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--e2e-requests", type=int, default=10)
    parser.add_argument("--bulk-seconds", type=float, default=90.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mnist")
    args = parser.parse_args()
    model = str(SEED_MODEL)
    pixels = {"feature_bounds": [0, 1]}  # pixels / 255
    config = {
        "name": "mnist-bench",
        "models": [
            {"name": "tutorial", "adapter": "sklearn-eiserver", "path": model, "options": {"convert_keys_once": False, **pixels}},
            {"name": "eiserver", "adapter": "sklearn-eiserver", "path": model, "options": pixels},
            {"name": "packed", "adapter": "sklearn-packed", "path": model, "options": pixels},
            {"name": "packed-bulk", "adapter": "sklearn-packed", "path": model, "options": {"mode": "bulk", **pixels}},
        ],
        "key_transport": {"name": "inline"},
        "limits": {"max_rows_per_request": 4096, "max_request_mb": 64},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "mnist-bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    figures = run_bench(
        Deployment.from_file(path),
        mnist_images()[: args.rows],
        args.out,
        repeats=args.repeats,
        e2e_requests=args.e2e_requests,
        bulk_budget_s=args.bulk_seconds,
    )
    print(format_table(figures))
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")


if __name__ == "__main__":
    main()
