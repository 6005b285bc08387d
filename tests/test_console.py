"""The web console in real headless Chromium (Debian's, driven by Playwright) against a real
server holding real pushes: sign-in, browsing, the artifact graph, tag actions, permissions,
CSRF, and screenshots in both themes at phone and desktop widths."""

from __future__ import annotations

import re
from typing import Any

import boto3
import markupsafe
import pytest
import requests

from cargohold.http.ecr.operations import OPERATIONS
from tests.consolehelpers import (
    VIEWER,
    VIEWER_PASSWORD,
    ConsoleServer,
    browser,  # noqa: F401 - fixture
    cargohold_admin,
    console,  # noqa: F401 - fixture
    requests_session,
    screenshot_dir,
    sign_in,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def page(browser: Any) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def signed_in(page: Any, console: ConsoleServer) -> Any:  # noqa: F811
    sign_in(page, console.url, console.key_id, console.secret)
    page.get_by_role("heading", name=re.compile("Repositories")).wait_for()
    return page


def test_sign_in_wrong_secret_then_sign_out(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    sign_in(page, console.url, console.key_id, "not-the-secret")
    assert page.get_by_text("Sign-in failed").is_visible()
    assert "/console/signin" in page.url
    response = page.goto(f"{console.url}/console/signin")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    signed_in(page, console)
    cookie = next(c for c in page.context.cookies() if c["name"] == "cargohold_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert 11 * 3600 < cookie["expires"] - __import__("time").time() <= 12 * 3600
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").first.wait_for()
    # The old cookie is revoked on the server, not only forgotten by this browser.
    replay = requests.get(f"{console.url}/console/", cookies={cookie["name"]: cookie["value"]},
                          allow_redirects=False)
    assert replay.status_code == 303 and "/console/signin" in replay.headers["Location"]


def test_user_without_permission_does_not_see_repository(page: Any, console: ConsoleServer  # noqa: F811
                                                         ) -> None:
    page.goto(f"{console.url}/console/")
    form = page.locator("form", has=page.get_by_label("User name"))
    form.get_by_label("User name").fill(VIEWER)
    form.get_by_label("Password").fill(VIEWER_PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    table = page.locator("#repos")
    table.wait_for()
    assert table.get_by_role("link", name="team/app").is_visible()
    assert table.get_by_text("charts/demo").count() == 0
    assert table.get_by_text("policies/authz").count() == 0
    # Denied actions have no buttons...
    assert page.get_by_text("Create a repository").count() == 0
    assert page.get_by_text("Delete…").count() == 0
    assert page.get_by_role("link", name="Administration").count() == 0
    page.goto(f"{console.url}/console/r/team/app/-/a/1.0")
    assert page.get_by_role("button", name="Delete image").count() == 0
    assert page.get_by_role("button", name="Add tag").count() == 0
    # A forged request with the viewer's own valid CSRF token is refused by the Authorizer.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    result = page.request.post(f"{console.url}/console/r/team/app/-/a/1.0/delete",
                               form={"csrf": csrf}, max_redirects=0)
    assert result.status == 400 and "not authorized" in result.text()
    assert requests.head(f"{console.url}/v2/team/app/manifests/1.0",
                         auth=(console.key_id, console.secret)).status_code == 200
    # ...and a hidden repository is not found, whether it exists or not.
    for hidden in ("charts/demo", "charts/demo/-/a/0.1.0", "no/such"):
        response = page.goto(f"{console.url}/console/r/{hidden}")
        assert response.status == 404
        assert "0.1.0" not in page.content()


def test_browse_to_helm_chart(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    signed_in(page, console)
    page.get_by_role("link", name="charts/demo").click()
    page.get_by_role("link", name="0.1.0").first.click()
    chart = page.locator("#chart")
    for label, value in (("Name", "demo"), ("Version", "0.1.0"), ("App version", "1.2.3"),
                         ("Description", "A demo chart")):
        assert chart.locator(f"dt:text-is('{label}') + dd").inner_text() == value
    assert "redis 18.0.0" in chart.inner_text()
    chart.get_by_text("values.yaml").click()
    assert "replicas: 2" in chart.locator("pre").inner_text()
    assert page.get_by_text("helm pull oci://").is_visible()


def test_chart_pushed_by_the_cli(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    signed_in(page, console)
    page.get_by_label("Search repositories and tags").fill("2.4.1")
    page.get_by_label("Search repositories and tags").press("Enter")
    page.get_by_role("link", name="charts/webapp:2.4.1").click()
    chart = page.locator("#chart")
    assert chart.locator("dt:text-is('Name') + dd").inner_text() == "webapp"
    assert chart.locator("dt:text-is('App version') + dd").inner_text() == "9.9"
    assert chart.locator(".readme h1").inner_text() == "Web app"
    assert chart.locator(".readme code").inner_text() == "helm install"


def test_opa_bundle_lists_and_reads_rego(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    signed_in(page, console)
    page.goto(f"{console.url}/console/r/policies/authz/-/a/1")
    bundle = page.locator("#bundle")
    assert "authz" in bundle.locator("dt:text-is('Roots') + dd").inner_text()
    bundle.get_by_role("link", name="authz/policy.rego").click()
    assert "default allow := false" in page.locator("#bundle pre").inner_text()


def test_multiarch_tree_with_signature_and_sbom(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    signed_in(page, console)
    page.goto(f"{console.url}/console/r/team/app/-/a/multi")
    graph = page.locator("#graph")
    assert graph.get_by_text("Multi-platform image").first.is_visible()
    assert graph.get_by_text("linux/amd64").is_visible()
    assert graph.get_by_text("linux/arm64/v8").is_visible()
    graph.get_by_text("linux/arm64/v8").click()  # expand the platform manifest
    arm = graph.locator("details.node:has(> summary .platform:text-is('linux/arm64/v8'))")
    assert arm.locator(".role:text-is('config')").is_visible()
    assert arm.locator(".role:text-is('layer')").is_visible()
    assert arm.locator(".blob .title").inner_text() == "“app.tar.gz”"
    assert graph.get_by_text("Referrers: application/spdx+json").is_visible()
    assert graph.get_by_text(
        "Referrers: application/vnd.dev.cosign.artifact.sig.v1+json").is_visible()
    assert graph.locator(".ref .kind-sbom").count() == 1
    assert graph.locator(".ref .kind-signature").count() == 1
    digest = console.pushed["index"]["digest"]
    assert page.locator("#digest").inner_text() == digest
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy digest").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == digest
    commands = page.locator("#pull").inner_text()
    assert f"docker pull 127.0.0.1:{console.server.port}/team/app@{digest}" in commands
    assert "aws ecr batch-get-image" in commands and "oras pull" in commands


def test_image_config_add_tag_then_delete(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    signed_in(page, console)
    pusher = __import__("tests.console_content", fromlist=["Pusher"]).Pusher(
        console.url, (console.key_id, console.secret))
    image = pusher.image("team/app", "doomed", seed="doomed", arch="riscv64")
    page.goto(f"{console.url}/console/r/team/app/-/a/doomed")
    config = page.locator("#config")
    assert config.locator("dt:text-is('Platform') + dd").inner_text() == "linux/riscv64"
    assert "8080/tcp" in config.inner_text() and "SEED=doomed" in config.inner_text()
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_label("New tag").fill("kept-name")
    page.get_by_role("button", name="Add tag").click()
    page.get_by_text("Tagged kept-name.").wait_for()
    assert requests.head(f"{console.url}/v2/team/app/manifests/kept-name",
                         auth=(console.key_id, console.secret)).status_code == 200
    page.get_by_role("button", name="Delete image").click()
    page.get_by_text(f"Deleted {image['digest']}.").wait_for()
    assert requests.head(f"{console.url}/v2/team/app/manifests/{image['digest']}",
                         auth=(console.key_id, console.secret)).status_code == 404


def test_csrf_token_is_checked(console: ConsoleServer) -> None:  # noqa: F811
    session, token = requests_session(console.url, console.key_id, console.secret)

    def exists(name: str) -> bool:
        return name in requests.get(f"{console.url}/v2/_catalog",
                                    auth=(console.key_id, console.secret)).json()["repositories"]

    for form in ({"name": "forged/one"}, {"name": "forged/one", "csrf": "0" * 64},
                 {"name": "forged/one", "csrf": ""}):
        refused = session.post(f"{console.url}/console/repositories/create", data=form,
                               allow_redirects=False)
        assert refused.status_code == 403 and "security token" in refused.text
    assert not exists("forged/one")
    # Sign-in itself needs the token of the visitor's pre-session cookie (no login CSRF).
    anonymous = requests.post(f"{console.url}/console/signin", data={
        "access_key_id": console.key_id, "secret_access_key": console.secret},
        allow_redirects=False)
    assert anonymous.status_code == 403 and "cargohold_console=" not in anonymous.headers.get(
        "Set-Cookie", "")
    # Another session's token does not fit this session.
    _, other_token = requests_session(console.url, console.key_id, console.secret)
    refused = session.post(f"{console.url}/console/repositories/create",
                           data={"name": "forged/one", "csrf": other_token},
                           allow_redirects=False)
    assert refused.status_code == 403 and not exists("forged/one")
    accepted = session.post(f"{console.url}/console/repositories/create",
                            data={"name": "forged/one", "csrf": token}, allow_redirects=False)
    assert accepted.status_code == 303 and exists("forged/one")


def test_policy_editor_refuses_invalid_json(console: ConsoleServer) -> None:  # noqa: F811
    session, token = requests_session(console.url, console.key_id, console.secret)
    ecr = boto3.client("ecr", endpoint_url=console.url, region_name="us-east-1",
                       aws_access_key_id=console.key_id, aws_secret_access_key=console.secret)
    for text in ('{"Version": ', '[1, 2]', '{"Version": "2012-10-17", "Statement": 5}'):
        response = session.post(f"{console.url}/console/r/team/app/-/policy",
                                data={"csrf": token, "op": "save", "policy": text})
        assert response.status_code == 400, text
        assert str(markupsafe.escape(text)) in response.text  # the draft is kept, escaped
        with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
            ecr.get_repository_policy(repositoryName="team/app")


def test_typed_confirmation_deletes_repository(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    pusher = __import__("tests.console_content", fromlist=["Pusher"]).Pusher(
        console.url, (console.key_id, console.secret))
    pusher.image("scratch/gone", "1")
    signed_in(page, console)
    # Filter as you type hides the other rows (the same filter also works as a plain form).
    page.get_by_label("Filter by name").fill("scratch")
    assert page.locator("#repos tr[data-name='team/app']").is_hidden()
    assert page.locator("#repos tr[data-name='scratch/gone']").is_visible()
    row = page.locator("tr", has=page.get_by_role("link", name="scratch/gone"))
    row.get_by_text("Delete…").click()
    button = row.get_by_role("button", name="Delete repository")
    assert button.is_disabled()
    row.get_by_label(re.compile("Type")).fill("scratch/gon")
    assert button.is_disabled()
    row.get_by_label(re.compile("Type")).fill("scratch/gone")
    button.click()
    page.get_by_text("Repository scratch/gone deleted.").wait_for()
    assert requests.get(f"{console.url}/v2/scratch/gone/tags/list",
                        auth=(console.key_id, console.secret)).status_code == 404


def test_admin_creates_user_and_sees_secret_once(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    signed_in(page, console)
    page.get_by_role("link", name="Administration").click()
    page.get_by_text("Create a user").click()
    page.get_by_label("User name").fill("newcomer")
    page.get_by_role("button", name="Create user").click()
    secret = page.locator(".secret code.wrap").inner_text()
    key_id = page.locator(".secret code").first.inner_text()
    assert key_id.startswith("AKCH") and len(secret) >= 40
    page.goto(f"{console.url}/console/admin/users")
    assert secret not in page.content()
    page.on("dialog", lambda dialog: dialog.accept())
    row = page.locator("#users tr", has=page.get_by_text("newcomer", exact=True))
    row.get_by_role("button", name="Deactivate").click()
    page.get_by_text(f"Access key {key_id} is now Inactive.").wait_for()
    assert requests.get(f"{console.url}/v2/_catalog", auth=(key_id, secret)).status_code == 401
    row.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_text(f"Access key {key_id} deleted.").wait_for()
    row.get_by_role("button", name="Delete user").click()
    page.get_by_text("User newcomer deleted.").wait_for()
    assert page.locator("#users").get_by_text("newcomer", exact=True).count() == 0
    page.get_by_role("link", name="Audit log").click()
    page.get_by_placeholder("Action (e.g. ecr:PutImage)").fill("iam:CreateUser")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#audit tbody tr").first.get_by_text("iam:CreateUser").is_visible()


def test_registry_settings_and_lifecycle_say_when_not_available(
        page: Any, console: ConsoleServer) -> None:  # noqa: F811
    signed_in(page, console)
    page.goto(f"{console.url}/console/admin/registry")
    text = page.locator("main").inner_text()
    if "PutRegistryPolicy" not in OPERATIONS:
        assert "The registry policy is not available on this server." in text
    if "GetAccountSetting" not in OPERATIONS:
        assert "BLOB_MOUNTING is not available on this server." in text
    page.goto(f"{console.url}/console/r/team/app")
    if "StartLifecyclePolicyPreview" not in OPERATIONS:
        assert page.get_by_text("Lifecycle policies are not available on this server."
                                ).is_visible()


@pytest.mark.skipif("StartLifecyclePolicyPreview" not in OPERATIONS,
                    reason="lifecycle policy operations are not in this build (they come with "
                           "the retention branch); the panel shows 'not available'")
def test_lifecycle_preview_marks_images(page: Any, console: ConsoleServer) -> None:  # noqa: F811
    pusher = __import__("tests.console_content", fromlist=["Pusher"]).Pusher(
        console.url, (console.key_id, console.secret))
    for n in range(3):
        pusher.image("life/cycle", None, seed=f"untagged-{n}")
    pusher.image("life/cycle", "keep", seed="kept")
    signed_in(page, console)
    page.goto(f"{console.url}/console/r/life/cycle")
    policy = ('{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", '
              '"countType": "imageCountMoreThan", "countNumber": 1}, '
              '"action": {"type": "expire"}}]}')
    page.get_by_label("Lifecycle policy JSON").fill(policy)
    page.get_by_role("button", name="Preview").click()
    for _ in range(50):
        page.goto(f"{console.url}/console/r/life/cycle")
        if page.locator("#images tr.expiring").count() >= 2:
            break
        page.wait_for_timeout(200)
    assert page.locator("#images tr.expiring").count() == 2
    assert page.locator("#images tr.expiring").get_by_text("keep").count() == 0


def test_screenshots(browser: Any, console: ConsoleServer,  # noqa: F811
                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """Main pages in both themes at phone (390 px) and desktop width, for people to look at."""
    target = screenshot_dir(tmp_path_factory)
    pages = {"signin": "/console/signin", "repositories": "/console/",
             "repository": "/console/r/team/app",
             "artifact-multiarch": "/console/r/team/app/-/a/multi",
             "artifact-chart": "/console/r/charts/demo/-/a/0.1.0",
             "artifact-image": "/console/r/team/app/-/a/1.0",
             "artifact-bundle": "/console/r/policies/authz/-/a/1?file=authz/policy.rego",
             "admin-users": "/console/admin/users",
             "admin-registry": "/console/admin/registry"}
    taken = 0
    for scheme in ("light", "dark"):
        for label, width in (("phone", 390), ("desktop", 1280)):
            context = browser.new_context(viewport={"width": width, "height": 844},
                                          color_scheme=scheme, device_scale_factor=1)
            page = context.new_page()
            page.goto(f"{console.url}/console/signin")
            page.screenshot(path=str(target / f"signin-{scheme}-{label}.png"), full_page=True)
            signed_in(page, console)
            for name, path in pages.items():
                if name == "signin":
                    continue
                page.goto(f"{console.url}{path}")
                page.screenshot(path=str(target / f"{name}-{scheme}-{label}.png"),
                                full_page=True)
                taken += 1
            context.close()
    assert taken == 32 and len(list(target.glob("*.png"))) >= 36


def test_repository_page_filters_sorts_and_pages_in_sql(console: ConsoleServer) -> None:  # noqa: F811
    pusher = __import__("tests.console_content", fromlist=["Pusher"]).Pusher(
        console.url, (console.key_id, console.secret))
    base = pusher.image("paged/app", "t0", seed="paged")
    document = requests.get(f"{console.url}/v2/paged/app/manifests/t0",
                            auth=(console.key_id, console.secret),
                            headers={"Accept": base["mediaType"]}).json()
    for n in range(1, 60):
        pusher.manifest("paged/app", {**document, "annotations": {"n": str(n)}},
                        f"t{n}" if n % 3 == 0 else None)
    pusher.referrer("paged/app", base, "application/spdx+json", b"{}")
    session, _ = requests_session(console.url, console.key_id, console.secret)

    def tags_on(query: str) -> list[str]:
        text = session.get(f"{console.url}/console/r/paged/app?{query}").text
        return re.findall(r'class="tag" href="[^"]+">([^<]+)</a>', text)

    first = session.get(f"{console.url}/console/r/paged/app").text
    assert "61 images" in first and "Page 1 of 2" in first
    assert tags_on("")[0] == "t57"  # newest first
    assert tags_on("order=oldest")[0] == "t0"
    assert tags_on("page=2") == ["t9", "t6", "t3", "t0"]  # the 11 oldest of 61
    assert tags_on("tag=t5") == ["t57", "t54", "t51"]
    assert tags_on("status=UNTAGGED") == [] and "untagged" in session.get(
        f"{console.url}/console/r/paged/app?status=UNTAGGED").text
    sboms = session.get(f"{console.url}/console/r/paged/app?kind=sbom").text
    assert "1 image" in sboms and "SBOM" in sboms
    assert "0 images" in session.get(f"{console.url}/console/r/paged/app?kind=helm").text
    listing = session.get(f"{console.url}/console/?sort=images&order=desc").text
    names = re.findall(r'class="strong" href="/console/r/([^"]+)"', listing)
    assert names[0] == "paged/app"


def test_describe_only_user_sees_repository_but_not_its_images(console: ConsoleServer,  # noqa: F811
                                                               tmp_path: Any) -> None:
    data_dir = console.server.data_dir
    cargohold_admin(data_dir, "users", "create", "describer", "--password-stdin", "--no-key",
                    stdin="describer-password\n")
    policy = tmp_path / "policy.json"
    policy.write_text('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
                      '"Action": "ecr:DescribeRepositories", '
                      '"Resource": "arn:aws:ecr:*:*:repository/charts/*"}]}')
    cargohold_admin(data_dir, "users", "put-policy", "describer", "Describe", str(policy))
    session = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"',
                      session.get(f"{console.url}/console/signin").text)
    assert token is not None
    session.post(f"{console.url}/console/signin", data={
        "csrf": token.group(1), "user_name": "describer", "password": "describer-password"})
    listing = session.get(f"{console.url}/console/").text
    assert "charts/demo" in listing and "team/app" not in listing
    page = session.get(f"{console.url}/console/r/charts/demo")
    assert page.status_code == 200 and "You may not list the images" in page.text
    assert "0.1.0" not in page.text
    assert session.get(f"{console.url}/console/r/charts/demo/-/a/0.1.0").status_code == 404
    assert session.get(f"{console.url}/console/r/team/app").status_code == 404


@pytest.mark.skipif("PutRegistryPolicy" not in OPERATIONS, reason="no registry settings")
def test_registry_settings_drive_the_ecr_operations(page: Any,
                                                    console: ConsoleServer) -> None:  # noqa: F811
    ecr = boto3.client("ecr", endpoint_url=console.url, region_name="us-east-1",
                       aws_access_key_id=console.key_id, aws_secret_access_key=console.secret)
    signed_in(page, console)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{console.url}/console/admin/registry")
    # BLOB_MOUNTING off, then on again.
    for value in ("DISABLED", "ENABLED"):
        page.get_by_label("BLOB_MOUNTING").select_option(value)
        with page.expect_navigation():
            page.locator("#blob-mounting").get_by_role("button", name="Save").click()
        assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == value
    # A creation template, created and deleted through the form.
    page.get_by_text("New template").click()
    page.get_by_label("Prefix").fill("console-made")
    page.get_by_label("Tag mutability").select_option("IMMUTABLE")
    with page.expect_navigation():
        page.get_by_role("button", name="Create template").click()
    made = ecr.describe_repository_creation_templates(prefixes=["console-made"])
    assert made["repositoryCreationTemplates"][0]["imageTagMutability"] == "IMMUTABLE"
    with page.expect_navigation():
        page.locator("#templates li", has=page.get_by_text("console-made")).get_by_role(
            "button", name="Delete").click()
    assert [t["prefix"] for t in ecr.describe_repository_creation_templates()[
        "repositoryCreationTemplates"] if t["prefix"] == "console-made"] == []
    # The registry policy: malformed JSON is refused and stores nothing; a valid one is set.
    page.get_by_label("Registry policy JSON").fill('{"Version": ')
    page.get_by_role("button", name="Save registry policy").click()   # refused in the page
    page.get_by_text(re.compile("Invalid JSON")).wait_for()
    session, token = requests_session(console.url, console.key_id, console.secret)
    refused = session.post(f"{console.url}/console/admin/registry",   # and by the server
                           data={"csrf": token, "op": "put_policy", "policy": '{"Version": '})
    assert refused.status_code == 400 and "not valid JSON" in refused.text
    with pytest.raises(ecr.exceptions.RegistryPolicyNotFoundException):
        ecr.get_registry_policy()
    policy = ('{"Version": "2012-10-17", "Statement": [{"Sid": "ReadAll", "Effect": "Allow", '
              '"Principal": {"AWS": "*"}, "Action": ["ecr:DescribeRepositories"], '
              f'"Resource": "arn:aws:ecr:us-east-1:{ecr.describe_registry()["registryId"]}'
              ':repository/*"}]}')
    page.goto(f"{console.url}/console/admin/registry")
    page.get_by_label("Registry policy JSON").fill(policy)
    with page.expect_navigation():
        page.get_by_role("button", name="Save registry policy").click()
    assert "ReadAll" in ecr.get_registry_policy()["policyText"]
    with page.expect_navigation():
        page.locator("section", has=page.get_by_label("Registry policy JSON")).get_by_role(
            "button", name="Delete").click()
    with pytest.raises(ecr.exceptions.RegistryPolicyNotFoundException):
        ecr.get_registry_policy()
