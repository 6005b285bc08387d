"""Hostile content stays inert in the console (stored XSS in every place a pusher controls),
archives are opened within bounds, and an open (--anonymous) registry needs no sign-in."""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests

from cargohold.http.console import archives
from tests.console_content import Pusher, targz
from tests.consolehelpers import (
    ConsoleServer,
    browser,  # noqa: F401 - fixture
    cargohold_admin,
    console,  # noqa: F401 - fixture
    requests_session,
    sign_in,
)

pytestmark = pytest.mark.timeout(240)
IMG = '<img src=x onerror="window.__xss=1">'
SCRIPT = '"><script>window.__xss=1</script>'


def test_stored_xss_payloads_stay_inert(browser: Any, console: ConsoleServer) -> None:  # noqa: F811
    push = Pusher(console.url, (console.key_id, console.secret))
    image = push.image("evil/app", "annotated", annotations={IMG: SCRIPT, "title": IMG})
    empty = push.blob("evil/app", b"{}")
    payload = push.blob("evil/app", b"data")
    referrer = push.manifest("evil/app", {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.thing+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
        "layers": [{"mediaType": "application/octet-stream", **payload,
                    "annotations": {"org.opencontainers.image.title": IMG}}],
        "subject": {"mediaType": image["mediaType"], "digest": image["digest"],
                    "size": image["size"]},
        "annotations": {"note": SCRIPT}})
    readme = (f"# Chart\n\n<script>window.__xss=1</script>\n\n{IMG}\n\n"
              "[click me](javascript:window.__xss=1)\n\n"
              '<a href="javascript:window.__xss=1">raw link</a>\n')
    push.chart("evil/chart", "6.6.6", readme=readme, description=SCRIPT)
    push.bundle("evil/bundle", "1", files={
        ".manifest": json.dumps({"roots": [IMG], "revision": SCRIPT}).encode(),
        f"policy/{IMG}.rego": b"package x\n# </pre><script>window.__xss=1</script>\n"})
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, console.url, console.key_id, console.secret)
    visits = {
        "/console/r/evil/app": [],
        "/console/r/evil/app/-/a/annotated": [IMG, SCRIPT],
        "/console/r/evil/chart/-/a/6.6.6": ["<script>window.__xss=1</script>", SCRIPT],
        "/console/r/evil/bundle/-/a/1": [IMG, SCRIPT],
        "/console/r/evil/bundle/-/a/1?file=" + requests.utils.quote(f"policy/{IMG}.rego"):
            ["</pre><script>window.__xss=1</script>"],
        "/console/search?q=" + requests.utils.quote(IMG): [IMG],
    }
    for path, shown in visits.items():
        page.goto(console.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None, path
        text = page.locator("main").inner_text()
        for payload_text in shown:
            assert payload_text in text, (path, payload_text)  # shown as text, not markup
    # The README became HTML, without script, handlers or javascript: links.
    page.goto(f"{console.url}/console/r/evil/chart/-/a/6.6.6")
    readme = page.locator(".readme")
    assert readme.locator("h1").inner_text() == "Chart"
    assert readme.locator("script, img, [onerror], a[href^='javascript']").count() == 0
    assert "<script>window.__xss=1</script>" in readme.inner_text()
    # The referrer's hostile layer title is text in the tree and a harmless download name.
    page.goto(f"{console.url}/console/r/evil/app/-/a/{referrer['digest']}")
    assert page.locator("#graph .blob .title").inner_text() == f"“{IMG}”"
    link = page.locator("#graph .blob a.dl").last.get_attribute("href")
    assert link is not None and "<" not in link and '"' not in link
    download = page.request.get(console.url + link)
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "<" not in disposition
    assert download.headers["content-type"] == "application/octet-stream"
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    context.close()


def test_hostile_chart_archive_is_not_opened(console: ConsoleServer) -> None:  # noqa: F811
    push = Pusher(console.url, (console.key_id, console.secret))
    push.chart("evil/escape", "1.0.0", extra={"../../etc/passwd": b"root:x:0:0"})
    session = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"',
                      session.get(f"{console.url}/console/signin").text)
    assert token is not None
    session.post(f"{console.url}/console/signin", data={
        "csrf": token.group(1), "access_key_id": console.key_id,
        "secret_access_key": console.secret})
    page = session.get(f"{console.url}/console/r/evil/escape/-/a/1.0.0")
    assert page.status_code == 200
    assert "Not opened" in page.text and "leaves the archive" in page.text


def _tar(tmp_path: Path, entries: dict[str, bytes], compress: bool = True) -> Path:
    path = tmp_path / "layer.tgz"
    path.write_bytes(targz(entries) if compress else _plain_tar(entries))
    return path


def _plain_tar(entries: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize("name", ["../up.rego", "/etc/passwd", "a/../../b", "a\\..\\b"])
def test_archive_paths_may_not_leave(tmp_path: Path, name: str) -> None:
    path = _tar(tmp_path, {"ok.rego": b"package ok", name: b"x"})
    with pytest.raises(archives.ArchiveRefused, match="leaves the archive"):
        archives.read_archive(path, path.stat().st_size, set())


def test_archive_entry_count_is_capped(tmp_path: Path) -> None:
    entries = {f"f{n}.rego": b"" for n in range(archives.MAX_ENTRIES + 1)}
    path = _tar(tmp_path, entries)
    with pytest.raises(archives.ArchiveRefused, match="entries"):
        archives.read_archive(path, path.stat().st_size, set())


def test_archive_decompressed_size_is_capped(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A gzip bomb: a few KB that claim megabytes. The cap counts what gzip really yields.
    monkeypatch.setattr(archives, "MAX_UNPACKED", 1024 * 1024)
    path = tmp_path / "bomb.tgz"
    path.write_bytes(gzip.compress(_plain_tar({"zeros": bytes(4 * 1024 * 1024)})))
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(archives.ArchiveRefused, match="unpacked"):
        archives.read_archive(path, path.stat().st_size, set())


def test_archive_layer_size_is_capped(tmp_path: Path) -> None:
    path = _tar(tmp_path, {"a.rego": b"x"})
    with pytest.raises(archives.ArchiveRefused, match="larger than"):
        archives.read_archive(path, archives.MAX_LAYER_SIZE + 1, set())


def test_archive_keeps_wanted_files_bounded(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_FILE", 10)
    path = _tar(tmp_path, {"./p/a.rego": b"0123456789abcdef", "p/b.txt": b"b"}, compress=False)
    view = archives.read_archive(path, path.stat().st_size, {"p/a.rego"}, suffix=".rego")
    assert view.files == {"p/a.rego": b"0123456789"} and view.truncated == {"p/a.rego"}
    assert view.entries == [("p/a.rego", 16)]


def test_sign_in_never_redirects_off_site(console: ConsoleServer) -> None:  # noqa: F811
    for target in ("//evil.example/x", "https://evil.example/", "/console/\\evil", "/v2/"):
        session = requests.Session()
        token = re.search(r'name="csrf" value="([^"]+)"',
                          session.get(f"{console.url}/console/signin").text)
        assert token is not None
        response = session.post(f"{console.url}/console/signin", data={
            "csrf": token.group(1), "access_key_id": console.key_id,
            "secret_access_key": console.secret, "next": target}, allow_redirects=False)
        assert response.status_code == 303 and response.headers["Location"] == "/console/"


def test_sessions_hold_and_end_across_workers(make_registry: Any) -> None:
    server = make_registry(["--workers", "2"], anonymous=False)
    key_id, secret = server.admin_credentials
    session, token = requests_session(server.url, key_id, secret)
    for _ in range(8):  # whichever worker answers knows the session
        assert session.get(f"{server.url}/console/", allow_redirects=False).status_code == 200
    cookie = session.cookies.get("cargohold_console")
    assert session.post(f"{server.url}/console/signout", data={"csrf": token},
                        allow_redirects=False).status_code == 303
    for _ in range(8):  # and every worker knows it ended
        replay = requests.get(f"{server.url}/console/", cookies={"cargohold_console": cookie},
                              allow_redirects=False)
        assert replay.status_code == 303 and "/console/signin" in replay.headers["Location"]
    # Deactivating the access key a session signed in with ends that session too.
    session, _ = requests_session(server.url, key_id, secret)
    cargohold_admin(server.data_dir, "keys", "deactivate", key_id)
    ended = session.get(f"{server.url}/console/", allow_redirects=False)
    assert ended.status_code == 303


def test_session_cookie_is_secure_behind_https(make_registry: Any) -> None:
    server = make_registry(env={"CARGOHOLD_PUBLIC_URL": "https://registry.example.com"},
                           anonymous=False)
    # Over plain HTTP a client keeps Secure cookies to itself, so they are carried by hand.
    first = requests.get(f"{server.url}/console/signin")
    pre = first.headers["Set-Cookie"]
    assert "Secure" in pre and "HttpOnly" in pre and "SameSite=Strict" in pre
    token = re.search(r'name="csrf" value="([^"]+)"', first.text)
    assert token is not None
    key_id, secret = server.admin_credentials
    signed = requests.post(f"{server.url}/console/signin", data={
        "csrf": token.group(1), "access_key_id": key_id, "secret_access_key": secret},
        headers={"Cookie": pre.split(";", 1)[0]}, allow_redirects=False)
    assert signed.status_code == 303
    cookie = next(value for value in signed.raw.headers.getlist("Set-Cookie")
                  if value.startswith("cargohold_console="))
    assert "Max-Age=43200" in cookie
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_anonymous_mode_needs_no_sign_in(make_registry: Any) -> None:
    server = make_registry()  # --anonymous
    Pusher(server.url, None).image("open/app", "1")
    session = requests.Session()
    page = session.get(f"{server.url}/", allow_redirects=True)
    assert page.status_code == 200 and "open/app" in page.text and "Sign in" not in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    refused = session.post(f"{server.url}/console/repositories/create",
                           data={"name": "open/new"}, allow_redirects=False)
    assert refused.status_code == 403
    created = session.post(f"{server.url}/console/repositories/create",
                           data={"name": "open/new", "csrf": token.group(1)},
                           allow_redirects=False)
    assert created.status_code == 303
    assert "open/new" in requests.get(f"{server.url}/v2/_catalog").json()["repositories"]
