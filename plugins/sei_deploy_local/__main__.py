"""`python -m sei_deploy_local BUILD`: serve a build folder in the foreground (a container image's command).

The process becomes azmlinfsrv (exec), so a container's stop signal reaches the server itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from sei_framework import Build, SeiError

from .address import HOST
from .target import LocalOptions, LocalTarget


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sei_deploy_local", description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="a build folder (sei build CONFIG --out FOLDER)")
    parser.add_argument("--host", default=HOST, help="address to listen on; beyond loopback only with --auth")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--auth", action="store_true", help="require the bearer token of --token-env")
    parser.add_argument("--token-env", default="SEI_LOCAL_TOKEN", help="the variable holding the token")
    parser.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="a web page origin allowed to call the service (CORS); repeat for more",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        options = LocalOptions(
            host=args.host, port=args.port, workers=args.workers, auth=args.auth, token_env=args.token_env,
            cors_origins=args.cors_origin,
        )  # fmt: skip
        LocalTarget(options).exec_foreground(Build.open(args.build))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        sys.exit(f"error: {problems}")
    except SeiError as exc:
        sys.exit(f"error: {exc.message}")


if __name__ == "__main__":
    main()
