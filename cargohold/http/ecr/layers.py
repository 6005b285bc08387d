"""ECR's layer operations: chunked uploads of base64 parts, availability checks, download URLs.

They drive the same upload sessions as `/v2` chunked uploads, so a layer started here may be
finished on any node, and ECR's part-size rules are checked on top.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cargohold.http.ecr.protocol import Call, OperationSpec, named_repository, repository_ids
from cargohold.http.keys import BLOBS_KEY, IDENTITY_KEY, REPOSITORIES_KEY, STORAGE_KEY, UPLOADS_KEY
from cargohold.services.blobs import ChunkRange
from cargohold.services.repositories import not_found
from cargohold.wire.digest import parse_digest
from cargohold.wire.ecr import EcrError, invalid_parameter
from cargohold.wire.errors import ErrorCode, RegistryError

PART_SIZE = 10 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024


async def _ensure_repository(call: Call, name: str) -> None:
    """RepositoryNotFoundException before anything else, as ECR answers."""
    await call.request.app[REPOSITORIES_KEY].get(name)


def _layer_error(exc: RegistryError, name: str, upload_id: str | None = None) -> EcrError:
    if exc.code is ErrorCode.BLOB_UPLOAD_UNKNOWN:
        return EcrError("UploadNotFoundException",
                        f"Upload with id '{upload_id}' is not found in repository '{name}'")
    if exc.code in (ErrorCode.RANGE_INVALID, ErrorCode.SIZE_INVALID):
        return EcrError("InvalidLayerPartException", exc.message)
    if exc.code is ErrorCode.DIGEST_INVALID:
        return EcrError("InvalidLayerException", exc.message)
    if exc.code is ErrorCode.NAME_UNKNOWN:
        return not_found(name)
    return invalid_parameter(exc.message)


async def initiate_layer_upload(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    await _ensure_repository(call, name)
    state = await call.request.app[UPLOADS_KEY].start(name)
    return {"uploadId": state.upload_id, "partSize": PART_SIZE}


async def upload_layer_part(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name, upload_id = params["repositoryName"], params["uploadId"]
    await _ensure_repository(call, name)
    try:
        part = base64.b64decode(params["layerPartBlob"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise invalid_parameter("layerPartBlob is not valid base64") from None
    first, last = params["partFirstByte"], params["partLastByte"]
    if last - first + 1 != len(part):
        raise EcrError("InvalidLayerPartException",
                       f"part bytes {first}-{last} do not match the {len(part)} bytes sent")
    uploads = call.request.app[UPLOADS_KEY]
    storage = call.request.app[STORAGE_KEY]
    try:
        session = await uploads.session(name, upload_id)
        if first != session.size:
            raise EcrError("InvalidLayerPartException",
                           f"the next part must start at byte {session.size}, not {first}")
        if first > 0 and session.last_chunk_size < MIN_PART_SIZE:
            # The previous part was not the last one after all; CompleteLayerUpload refuses.
            await storage.db(storage.metadata.mark_undersized_part, upload_id)
        state = await uploads.append(name, upload_id, _single(part), ChunkRange(first, last),
                                     len(part))
    except RegistryError as exc:
        raise _layer_error(exc, name, upload_id) from None
    return {**repository_ids(call, name), "uploadId": upload_id, "lastByteReceived": state.size - 1}


async def _single(data: bytes) -> Any:
    yield data


async def complete_layer_upload(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name, upload_id = params["repositoryName"], params["uploadId"]
    await _ensure_repository(call, name)
    digests = params["layerDigests"]
    if len(digests) != 1:
        raise invalid_parameter("exactly one layer digest is expected")
    try:
        digest = str(parse_digest(digests[0]))
    except RegistryError:
        raise invalid_parameter(f"invalid layer digest {digests[0]!r}") from None
    uploads = call.request.app[UPLOADS_KEY]
    try:
        session = await uploads.session(name, upload_id)
        if session.size == 0:
            raise EcrError("EmptyUploadException", f"The upload with id '{upload_id}' is empty")
        if session.undersized_part:
            raise EcrError("LayerPartTooSmallException",
                           f"Layer parts must be at least {MIN_PART_SIZE} bytes, except the "
                           "last one")
        storage = call.request.app[STORAGE_KEY]
        if await storage.read(storage.metadata.blob_size, name, digest) is not None:
            await uploads.cancel(name, upload_id, missing_ok=True)
            raise EcrError("LayerAlreadyExistsException",
                           f"The layer '{digest}' already exists in the repository '{name}'")
        completed, _ = await uploads.complete(name, upload_id, digest, None, None, None)
    except RegistryError as exc:
        raise _layer_error(exc, name, upload_id) from None
    return {**repository_ids(call, name), "uploadId": upload_id, "layerDigest": str(completed)}


async def batch_check_layer_availability(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    await _ensure_repository(call, name)
    storage = call.request.app[STORAGE_KEY]
    layers, failures = [], []
    for raw in params["layerDigests"]:
        try:
            digest = str(parse_digest(raw))
        except RegistryError:
            failures.append({"layerDigest": raw, "failureCode": "InvalidLayerDigest",
                             "failureReason": "Invalid layer digest"})
            continue
        size = await storage.read(storage.metadata.blob_size, name, digest)
        if size is None:
            failures.append({"layerDigest": raw, "failureCode": "MissingLayerDigest",
                             "failureReason": "Could not find the layer"})
        else:
            layers.append({"layerDigest": digest, "layerAvailability": "AVAILABLE",
                           "layerSize": size})
    return {"layers": layers, "failures": failures}


async def get_download_url_for_layer(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    await _ensure_repository(call, name)
    try:
        digest = str(parse_digest(params["layerDigest"]))
    except RegistryError:
        raise invalid_parameter("invalid layer digest") from None
    try:
        await call.request.app[BLOBS_KEY].locate(name, digest)
    except RegistryError:
        raise EcrError("LayersNotFoundException",
                       f"The layer '{digest}' does not exist in the repository '{name}'"
                       ) from None
    storage = call.request.app[STORAGE_KEY]
    presigned = storage.blobs.presign(digest, storage.settings.blob_store.redirect_expiry_seconds)
    if presigned is not None:  # S3: the store serves the layer itself, as on ECR
        return {"downloadUrl": presigned, "layerDigest": digest}
    identity = call.request.app[IDENTITY_KEY]
    query = identity.presign_blob(name, digest)
    return {"downloadUrl": f"{call.base_url}/v2/{name}/blobs/{digest}?{query}",
            "layerDigest": digest}


LAYER_OPERATIONS: dict[str, OperationSpec] = {
    "InitiateLayerUpload": OperationSpec(initiate_layer_upload, named_repository),
    "UploadLayerPart": OperationSpec(upload_layer_part, named_repository),
    "CompleteLayerUpload": OperationSpec(complete_layer_upload, named_repository),
    "BatchCheckLayerAvailability": OperationSpec(batch_check_layer_availability, named_repository),
    "GetDownloadUrlForLayer": OperationSpec(get_download_url_for_layer, named_repository),
}
