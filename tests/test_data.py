"""A clone is self-contained: the data the project uses ships in data/, documented, and nothing
reads a folder beside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, MNIST_IMAGES, MNIST_LABELS, ROOT, SEED_MODEL, load_mnist, load_seed_model, project_files
from sei_framework.config import load_config

# The old location of the data, one folder above the clone (spelled in parts so this file does not match).
OUTSIDE = re.compile("|".join([r"\.\./" + "shared", "shared" + r"/data", r"parent\s*/\s*\"" + "shared" + '"']))


def test_nothing_reads_a_folder_beside_the_repository():
    files = project_files()
    assert ROOT / "Makefile" in files and ROOT / "examples" / "tutorial.ipynb" in files
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "the repository's data is in data/; these lines look outside the clone:\n" + "\n".join(hits)


def test_every_shipped_file_is_documented_with_its_size_source_and_licence():
    readme = (DATA / "README.md").read_text()
    shipped = sorted(path for path in DATA.rglob("*") if path.is_file() and path.name != "README.md")
    assert shipped == sorted([MNIST_IMAGES, MNIST_LABELS, SEED_MODEL])
    for path in shipped:
        row = next((line for line in readme.splitlines() if f"`{path.relative_to(DATA)}`" in line), None)
        assert row is not None, f"data/README.md has no row for {path.relative_to(DATA)}"
        assert f"{path.stat().st_size:,}" in row, f"data/README.md gives the wrong size for {path.name}"
    for credit in ("Yann LeCun", "Corinna Cortes", "Christopher J.C. Burges", "CC BY-SA 3.0",
                   "Azure/MachineLearningNotebooks", "tutorials/image-classification-mnist-data", "MIT"):  # fmt: skip
        assert credit in readme


def test_the_shipped_model_scores_the_shipped_test_set_as_the_tutorial_reports():
    images, labels = load_mnist(10_000)
    assert images.shape == (10_000, 784) and 0.0 <= images.min() and images.max() <= 1.0
    model = load_seed_model()
    assert type(model).__name__ == "LogisticRegression" and model.coef_.shape == (10, 784)
    assert np.mean(model.predict(images) == labels) == pytest.approx(0.9193, abs=1e-4)


@pytest.mark.parametrize("name", ["mnist-local", "mnist-aci", "mnist-online"])
def test_the_mnist_configs_name_the_shipped_model(name):
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    assert [Path(model.path) for model in config.models] == [SEED_MODEL.resolve()]
