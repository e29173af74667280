"""The fingerprint of a model's description: what binds a request (or a batch job) to one version of a model.

A client encrypts for, and reads answers with, the description it was given (parameters, bounds, labels,
readout). Each predict request carries the sha256 of that description; the service compares it with its
own and answers `description_changed` when the model was rebuilt since, so no answer is read with the
description of another version.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .errors import DescriptionChanged, InvalidRequest

__all__ = ["FINGERPRINT_FIELD", "check_fingerprint", "description_fingerprint"]

FINGERPRINT_FIELD = "description_sha256"
"""The predict request's field that carries the fingerprint (as a batch manifest's field of the same name)."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


def description_fingerprint(description: dict[str, Any]) -> str:
    """sha256 of one model's description (canonical JSON: sorted keys, no spaces), without its `limits`:
    what a client encrypts for and reads answers with. The service's per-model limits are left out, so a
    redeploy with other limits keeps clients (and batch jobs) valid."""
    relevant = {key: value for key, value in description.items() if key != "limits"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_fingerprint(sent: Any, expected: str, model: str) -> None:
    """Refuse a request whose `description_sha256` is not `expected`, model `model`'s own; a request
    without one (an older client, the tutorial's request) is served as before."""
    if sent is None:
        return
    if not isinstance(sent, str) or not _SHA256.fullmatch(sent):
        raise InvalidRequest(f"{FINGERPRINT_FIELD} must be 64 lowercase hex characters (a sha256)", code="invalid_request")
    if sent != expected:
        raise DescriptionChanged(
            f"model {model!r} is not the version this request was made for (its description changed: a rebuild or "
            "redeploy since the client's describe): describe the service again, encrypt again and resend"
        )
