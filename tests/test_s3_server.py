"""One Cargohold node with its blobs in S3 (SeaweedFS): configuration from TOML, environment
or the AWS credential chain; streamed and ranged pulls; 307 redirects; /healthz checks the
bucket."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from ocihelpers import EXTERNAL, assert_blob, push_image, random_bytes, sha256
from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedS3

from cargohold.config import load_settings

pytestmark = pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers")
TIMEOUT = 60


def test_toml_and_environment_configure_the_s3_backend(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[blob_store]\nbackend = "s3"\nbucket = "from-toml"\nprefix = "reg/"\n'
                      'endpoint_url = "http://127.0.0.1:9"\naddressing_style = "path"\n'
                      'redirect = true\n')
    monkeypatch.setenv("CARGOHOLD_BLOB_STORE__BUCKET", "from-env")
    settings = load_settings(config)
    store = settings.blob_store
    assert (store.backend, store.bucket, store.prefix, store.redirect) == \
        ("s3", "from-env", "reg/", True)
    assert store.access_key_id is None and "secret" not in repr(store)


def test_s3_node_streams_ranges_and_redirects(make_registry, seaweed_s3: SeaweedS3) -> None:
    bucket = seaweed_s3.new_bucket()
    # No keys in the settings: the credentials come from the standard AWS chain (environment).
    env = {key: value for key, value in seaweed_s3.blob_store_env(bucket, redirect=True).items()
           if "ACCESS_KEY" not in key}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    server = make_registry(env=env)
    health = requests.get(server.url + "/healthz", timeout=TIMEOUT).json()
    assert health["blob_store"] == {"status": "ok"}
    image = push_image(server.url, "s3/app", "v1")
    data = random_bytes(3 * 1024 * 1024)
    started = requests.post(f"{server.url}/v2/s3/app/blobs/uploads/?digest={sha256(data)}",
                            data=data, timeout=TIMEOUT)
    assert started.status_code == 201
    url = f"{server.url}/v2/s3/app/blobs/{sha256(data)}"
    redirected = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert redirected.status_code == 307
    assert redirected.headers["Location"].startswith(seaweed_s3.endpoint + f"/{bucket}/blobs/")
    assert requests.get(url, timeout=TIMEOUT).content == data  # followed, no credentials
    head = requests.head(url, timeout=TIMEOUT)  # HEAD is answered by the node itself
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    for digest, blob in image.blobs.items():
        assert_blob(server.url, "s3/app", digest, blob)
    # The objects are where the layout says, under their content address.
    key = f"blobs/sha256/{sha256(data)[7:9]}/{sha256(data)[7:]}"
    assert seaweed_s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)


def test_s3_node_proxies_ranges_and_reports_a_missing_bucket(make_registry,
                                                            seaweed_s3: SeaweedS3) -> None:
    bucket = seaweed_s3.new_bucket()
    server = make_registry(env=seaweed_s3.blob_store_env(bucket))
    data = random_bytes(2 * 1024 * 1024 + 11)
    assert requests.post(f"{server.url}/v2/s3/r/blobs/uploads/?digest={sha256(data)}",
                         data=data, timeout=TIMEOUT).status_code == 201
    url = f"{server.url}/v2/s3/r/blobs/{sha256(data)}"
    whole = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert whole.status_code == 200 and whole.content == data
    for header, want in (("bytes=0-0", data[:1]), ("bytes=1000-", data[1000:]),
                         ("bytes=-5", data[-5:]), ("bytes=5-1048580", data[5:1048581])):
        part = requests.get(url, headers={"Range": header}, timeout=TIMEOUT)
        assert part.status_code == 206 and part.content == want, header
    beyond = requests.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=TIMEOUT)
    assert beyond.status_code == 416
    client = seaweed_s3.client()
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
    health = requests.get(server.url + "/healthz", timeout=TIMEOUT)
    assert health.status_code == 503 and health.json()["blob_store"]["status"] == "error"
