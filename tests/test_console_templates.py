"""The console's panels for operations other branches add (lifecycle policies and preview,
registry policy, creation templates, BLOB_MOUNTING) render once those operations exist: the
templates are rendered here with the shapes botocore's ECR model gives those responses."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from cargohold.http.console.render import setup_templates
from cargohold.http.console.session import Visit
from cargohold.services.identity import Principal
from cargohold.storage.images import ImageRecord

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def environment() -> object:
    app = web.Application()
    setup_templates(app)
    return aiohttp_jinja2.get_env(app)


def common() -> dict[str, object]:
    return {"visit": Visit(Principal(1, "admin", "AKCHX", "console"), "t" * 64, True, False),
            "admin": True, "q": "", "flash": "", "error": ""}


def test_lifecycle_panel_and_preview_marks_render() -> None:
    images = [ImageRecord(2, DIGEST, "application/vnd.oci.image.manifest.v1+json",
                          "application/vnd.oci.image.config.v1+json", None, 10, 1, None, None,
                          ()),
              ImageRecord(1, OTHER, "application/vnd.oci.image.manifest.v1+json",
                          "application/vnd.oci.image.config.v1+json", None, 10, 1, None, None,
                          ("keep",))]
    preview = {"status": "COMPLETE", "summary": {"expiringImageTotalCount": 7},
               "previewResults": [{"imageDigest": DIGEST, "imageTags": [],
                                   "action": {"type": "EXPIRE"}, "appliedRulePriority": 1}]}
    html = environment().get_template("repository.html").render(  # type: ignore[attr-defined]
        **common(), name="team/app", images=images, total=2, page=1, pages=1, counts={},
        kind_key="", tag_status="ANY", newest=True, tag_text="", link=lambda **_: "/x",
        statuses=("ANY", "TAGGED", "UNTAGGED"), policy="", policy_error="",
        can_set_policy=True, lifecycle='{"rules": []}', lifecycle_error="",
        lifecycle_available=True, can_set_lifecycle=True, can_preview=True, preview=preview,
        expiring={DIGEST: preview["previewResults"][0]}, can_delete=True, can_list=True)
    assert "7 image(s) would expire" in html
    assert html.count('class="expiring"') == 1 and 'title="Rule 1">expires</span>' in html
    assert "Save lifecycle policy" in html and ">Preview</button>" in html
    assert "not available on this server" not in html


def test_registry_settings_render_when_available() -> None:
    html = environment().get_template("admin_registry.html").render(  # type: ignore[attr-defined]
        **common(), section="registry", policy='{\n  "Version": "2012-10-17"\n}',
        policy_error="", templates=[{"prefix": "team", "description": "<b>x</b>",
                                     "imageTagMutability": "IMMUTABLE",
                                     "appliedFor": ["CREATE_ON_PUSH"]}],
        templates_error="", mounting="ENABLED", mounting_error="",
        available={op: True for op in (
            "GetRegistryPolicy", "PutRegistryPolicy", "DeleteRegistryPolicy",
            "DescribeRepositoryCreationTemplates", "CreateRepositoryCreationTemplate",
            "DeleteRepositoryCreationTemplate", "GetAccountSetting", "PutAccountSetting")})
    assert "not available on this server" not in html
    assert "Save registry policy" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<option selected>ENABLED</option>" in html
    assert 'name="op" value="create_template"' in html
