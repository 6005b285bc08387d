"""OCI Distribution Spec v1.1: the API version check (end-1) and the shape of error responses."""

from __future__ import annotations

from ocihelpers import (
    STRICT,
    assert_error,
    get_blob,
    get_manifest,
    list_tags,
    request,
    unknown_digest,
)


def test_v2_base_returns_200(registry_url: str) -> None:
    # end-1; conformance "GET request to base API route must return 200 response".
    resp = request("GET", f"{registry_url}/v2/")
    assert resp.status_code == 200
    # "When a 200 OK or 401 Unauthorized response is returned, the
    # Docker-Distribution-API-Version header SHOULD be set to registry/2.0".
    assert resp.headers.get("Docker-Distribution-API-Version") == "registry/2.0"


def test_v2_base_head_returns_200(registry_url: str) -> None:
    resp = request("HEAD", f"{registry_url}/v2/")
    assert resp.status_code == 200
    assert resp.content == b""


def test_error_envelope_shape_for_unknown_manifest(registry_url: str, repo: str) -> None:
    # "If the response body is in JSON format, it MUST have the following format:
    # {"errors": [{"code", "message", "detail"}]}; code MUST be uppercase letters and
    # underscores and one of the defined codes."
    resp = get_manifest(registry_url, repo, "does-not-exist")
    assert_error(resp, 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))
    body = resp.json()
    for entry in body["errors"]:
        assert set(entry) <= {"code", "message", "detail"}, entry


def test_error_envelope_for_unknown_blob(registry_url: str, repo: str) -> None:
    assert_error(get_blob(registry_url, repo, unknown_digest()), 404,
                 ("BLOB_UNKNOWN", "NAME_UNKNOWN"))


def test_error_envelope_for_unknown_repository_tags(registry_url: str, repo: str) -> None:
    assert_error(list_tags(registry_url, repo), 404, "NAME_UNKNOWN")


def test_conformance_400_body_is_oci_error_json(registry_url: str, repo: str) -> None:
    # Conformance "400 response body should contain OCI-conforming JSON message":
    # PUT /manifests/sha256:totallywrong with body "blablabla" -> 400 (or 404), and a 400
    # carries a spec error code.
    resp = request("PUT", f"{registry_url}/v2/{repo}/manifests/sha256:totallywrong",
                   data=b"blablabla",
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if STRICT:
        assert_error(resp, 400, ("DIGEST_INVALID", "MANIFEST_INVALID"))
    else:
        assert resp.status_code in (400, 404)
        if resp.status_code == 400:
            assert_error(resp, 400)
