"""A newcomer's path, end to end, each step a separate `sei` process as on a user's shell.

A model on raw units (ages in years, prices in euros) -> configs/minimal.yaml with its calibration
data -> `sei deploy` with the local target on 0.0.0.0 and auth -> `sei status` -> `sei predict` from
another process, over this machine's own non-loopback address when it has one -> the predictions are
the model's own -> `sei delete`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "sei-newcomer-token-7e1d44a0c9"
SEI = [sys.executable, "-c", "from sei_framework.cli import main; main()"]


def sei(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SEI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def own_address() -> str:
    """An IPv4 address of this machine beyond loopback, if it has one (never another machine's)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family.name == "AF_INET" and not ipaddress.ip_address(address.address).is_loopback:
                return address.address
    return "127.0.0.1"


def test_raw_units_model_to_a_client_in_another_process(tmp_path):
    env = {**os.environ, "SEI_HOME": str(tmp_path / "home"), "SEI_LOCAL_TOKEN": TOKEN}
    made = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "minimal_model.py"), "--out", str(tmp_path / "examples" / "models")],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert "minimal.joblib" in made.stdout
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "minimal.yaml"
    shutil.copyfile(ROOT / "configs" / "minimal.yaml", config)  # the README's config, its paths as they are
    with open(config, "a") as handle:
        handle.write("deploy:\n  target: local\n  options: {host: 0.0.0.0, auth: true}\n")

    deployed = sei("deploy", "configs/minimal.yaml", env=env, cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    uri = deployed.stdout.strip().splitlines()[-1]
    try:
        status = json.loads(sei("status", "configs/minimal.yaml", "--json", env=env, cwd=tmp_path).stdout)
        assert status["state"] == "running" and status["host"] == "0.0.0.0" and status["scoring_uri"] == uri
        assert TOKEN not in json.dumps(status)

        sys.path.insert(0, str(ROOT / "examples"))
        try:
            from minimal_model import COLUMNS, make_rows
        finally:
            sys.path.remove(str(ROOT / "examples"))
        X, _ = make_rows(25, seed=2026)
        rows = tmp_path / "customers.csv"
        np.savetxt(rows, X, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%g")
        remote = uri.replace("127.0.0.1", own_address())  # the server listens on every interface
        client_env = {k: v for k, v in env.items() if k != "SEI_HOME"} | {"SEI_HOME": str(tmp_path / "client")}
        args = ["predict", "--endpoint", remote, "--model", "renewal", "--input", str(rows), "--json"]
        if remote != uri:
            args.append("--allow-insecure-http")  # plain http beyond loopback: the token is readable on the way
        refused = sei(*args, env=client_env, cwd=tmp_path)
        assert refused.returncode == 1 and "401 unauthorized" in refused.stderr
        answer = sei(*args, "--token-env", "SEI_LOCAL_TOKEN", env=client_env, cwd=tmp_path)
        assert answer.returncode == 0, answer.stderr
        model = joblib.load(tmp_path / "examples" / "models" / "minimal.joblib")
        result = json.loads(answer.stdout)
        assert result["predictions"] == model.predict(X).tolist()
        np.testing.assert_allclose(result["probabilities"], model.predict_proba(X), atol=1e-3)
        assert TOKEN not in answer.stdout + answer.stderr + refused.stderr
    finally:
        deleted = sei("delete", "configs/minimal.yaml", env=env, cwd=tmp_path)
    assert deleted.returncode == 0 and "deleted minimal" in deleted.stdout
    assert json.loads(sei("status", "configs/minimal.yaml", "--json", env=env, cwd=tmp_path).stdout)["state"] == (
        "not deployed"
    )


def test_the_readme_and_getting_started_show_configs_minimal_as_it_is():
    text = (ROOT / "configs" / "minimal.yaml").read_text()
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert body.startswith("name: minimal\n")
    for page in ("README.md", "docs/getting-started.md"):
        assert f"```yaml\n{body}```" in (ROOT / page).read_text(), page
    readme = (ROOT / "README.md").read_text()
    assert readme.index("configs/minimal.yaml") < readme.index("## Quickstart")  # at the top
