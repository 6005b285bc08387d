"""Wire formats of a notification: the CNCF distribution envelope, or an Amazon EventBridge
"ECR Image Action" event. Both are rendered from the stored event at delivery time."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

DISTRIBUTION_CONTENT_TYPE = "application/vnd.docker.distribution.events.v1+json"
SIGNATURE_HEADER = "X-Cargohold-Signature"
# Both vocabularies lack tag and lifecycle: a tag moved is a push of that tag, an image a
# lifecycle policy expired is a delete (as ECR reports lifecycle expirations).
ECR_ACTIONS = {"push": "PUSH", "tag": "PUSH", "delete": "DELETE", "pull": "PULL",
               "lifecycle": "DELETE"}
DISTRIBUTION_ACTIONS = {"tag": "push", "lifecycle": "delete"}


def _timestamp(at_us: int) -> str:
    return dt.datetime.fromtimestamp(at_us / 1e6, dt.UTC).isoformat().replace("+00:00", "Z")


def distribution_event(data: dict[str, Any], source: dict[str, str]) -> dict[str, Any]:
    context = data.get("context") or {}
    repository, digest = data["repository"], data.get("digest")
    target: dict[str, Any] = {"repository": repository}
    if digest:
        target.update(mediaType=data.get("media_type"), digest=digest, size=data.get("size"),
                      length=data.get("size"))
        base = context.get("base_url") or ""
        target["url"] = f"{base}/v2/{repository}/manifests/{digest}"
    if data.get("tag"):
        target["tag"] = data["tag"]
    action = DISTRIBUTION_ACTIONS.get(data["action"], data["action"])
    return {"id": data["id"], "timestamp": _timestamp(data["at"]), "action": action,
            "target": target, "request": context.get("request") or {},
            "actor": context.get("actor") or {}, "source": source}


def ecr_event(data: dict[str, Any], source: dict[str, str], region: str,
              account: str) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "result": "SUCCESS",
        "repository-name": data["repository"],
        "image-digest": data.get("digest"),
        "action-type": ECR_ACTIONS.get(data["action"], data["action"].upper()),
        "manifest-media-type": data.get("media_type"),
        "artifact-media-type": data.get("artifact_type") or data.get("media_type"),
    }
    if data.get("tag"):
        detail["image-tag"] = data["tag"]
    return {
        "version": "0", "id": data["id"], "detail-type": "ECR Image Action",
        "source": "aws.ecr", "account": account, "time": _timestamp(data["at"])[:19] + "Z",
        "region": region,
        "resources": [f"arn:aws:ecr:{region}:{account}:repository/{data['repository']}"],
        "detail": detail,
    }


def render(fmt: str, data: dict[str, Any], source: dict[str, str], region: str,
           account: str) -> tuple[bytes, str]:
    """The request body and content type for one event in the endpoint's format."""
    if fmt == "ecr":
        return json.dumps(ecr_event(data, source, region, account)).encode(), "application/json"
    envelope = {"events": [distribution_event(data, source)]}
    return json.dumps(envelope).encode(), DISTRIBUTION_CONTENT_TYPE


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC of the body>`, as GitHub-style receivers verify it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
