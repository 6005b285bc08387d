"""Looking around a registry: ``repos``, ``tags``, ``images``, ``tree``, ``manifest``, and the
small edits ``tag`` and ``rm``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cargohold.cli.common import (
    connection,
    emit,
    fail,
    handle_errors,
    iso_time,
    output_option,
    ref_arg,
    registry_options,
    run_with_registry,
)
from cargohold.client.errors import ClientError, NotFound
from cargohold.client.reference import (
    parse_registry,
    validate_tag,
)


@click.command()
@click.argument("ref")
@click.option("--no-referrers", is_flag=True, help="Do not look up referrers.")
@registry_options
@output_option
@handle_errors
def tree(ref: str, no_referrers: bool, plain_http: bool, insecure: bool,
         registry_config: str | None, output: str) -> None:
    """Show the artifact graph of REF: index -> manifests -> config and layers, referrers."""
    from cargohold.client.tree import TreeBuilder, render_tree

    target = ref_arg(ref)
    if not target.reference:
        target = target.with_tag("latest")

    async def work(reg: Any) -> Any:
        return await TreeBuilder(reg, target, referrers=not no_referrers).build()

    root = run_with_registry(connection(plain_http, insecure, registry_config), work)
    emit(output, root, lambda: render_tree(root))


@click.command()
@click.argument("registry")
@registry_options
@output_option
@handle_errors
def repos(registry: str, plain_http: bool, insecure: bool, registry_config: str | None,
          output: str) -> None:
    """List the repositories of REGISTRY (its /v2/_catalog)."""
    host = parse_registry(registry)

    async def work(reg: Any) -> list[str]:
        return list(await reg.catalog(host))

    names = run_with_registry(connection(plain_http, insecure, registry_config), work)
    emit(output, {"registry": host, "repositories": names}, "\n".join(names))


@click.command()
@click.argument("repo", metavar="REGISTRY/REPOSITORY")
@registry_options
@output_option
@handle_errors
def tags(repo: str, plain_http: bool, insecure: bool, registry_config: str | None,
         output: str) -> None:
    """List the tags of a repository."""
    target = ref_arg(repo)
    if target.reference:
        raise fail(f"{repo}: give a repository without tag or digest")

    async def work(reg: Any) -> list[str]:
        return list(await reg.list_tags(target))

    names = run_with_registry(connection(plain_http, insecure, registry_config), work)
    emit(output, {"name": f"{target.repository}", "registry": target.host, "tags": names},
         "\n".join(names))


@click.command()
@click.argument("repo", metavar="REGISTRY/REPOSITORY")
@click.option("--artifact-type", help="Only images of this artifact type.")
@click.option("--tag-status", type=click.Choice(["tagged", "untagged", "any"]), default="any",
              show_default=True)
@click.option("--api", type=click.Choice(["auto", "ecr", "v2"]), default="auto",
              show_default=True, help="ECR-compatible API, /v2, or try ECR then /v2.")
@registry_options
@output_option
@handle_errors
def images(repo: str, artifact_type: str | None, tag_status: str, api: str, plain_http: bool,
           insecure: bool, registry_config: str | None, output: str) -> None:
    """List the images (manifests) of a repository with their tags, types and sizes."""
    from cargohold.client.images import NoEcrApi, ecr_describe_images, v2_describe_images
    from cargohold.client.mediatypes import friendly_artifact_type
    from cargohold.client.tree import human_size

    target = ref_arg(repo)
    if target.reference:
        raise fail(f"{repo}: give a repository without tag or digest")
    opts = connection(plain_http, insecure, registry_config)
    details: list[dict[str, Any]] | None = None
    source = "v2"
    if api in ("auto", "ecr"):
        from cargohold.client.transport import Transport, TransportOptions

        transport = Transport(TransportOptions(plain_http=plain_http, insecure=insecure,
                                               config_path=registry_config))
        try:
            details = ecr_describe_images(transport.base_url(target.host), target.repository,
                                          tag_status, verify=not insecure)
            source = "ecr"
        except NoEcrApi as exc:
            # auto: no ECR API, or AWS credentials missing or refused; /v2 with the login.
            if api == "ecr":
                raise fail(f"the ECR API of {target.host} cannot be used: {exc}") from None
    if details is None:
        async def work(reg: Any) -> list[dict[str, Any]]:
            return await v2_describe_images(reg, target, tag_status)

        details = run_with_registry(opts, work)
    if artifact_type:
        details = [d for d in details if d.get("artifactMediaType") == artifact_type]
    details.sort(key=lambda d: (not d.get("imageTags"), sorted(d.get("imageTags") or [""])[0],
                                d.get("imageDigest", "")))

    def text() -> str:
        rows = [("DIGEST", "TAGS", "TYPE", "SIZE", "PUSHED")]
        for d in details or []:
            kind = d.get("artifactMediaType") or d.get("imageManifestMediaType", "")
            rows.append((d.get("imageDigest", ""), ",".join(d.get("imageTags") or []) or "-",
                         f"{friendly_artifact_type(kind)} [{kind}]",
                         human_size(int(d.get("imageSizeInBytes") or 0)),
                         iso_time(d.get("imagePushedAt"))))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4]
                         for r in rows)

    emit(output, {"repository": target.repo_ref, "source": source, "imageDetails": details},
         text)


@click.command()
@click.argument("ref")
@click.option("--raw", is_flag=True, help="The exact bytes the registry returned.")
@click.option("--descriptor", is_flag=True, help="Only the descriptor (type, digest, size).")
@click.option("--platform", help="For an index: show the os/arch[/variant] manifest.")
@registry_options
@output_option
@handle_errors
def manifest(ref: str, raw: bool, descriptor: bool, platform: str | None, plain_http: bool,
             insecure: bool, registry_config: str | None, output: str) -> None:
    """Print the manifest of REF (pretty JSON; --raw for the exact bytes)."""
    from cargohold.client.artifact import select_manifest

    target = ref_arg(ref)
    if not target.reference:
        target = target.with_tag("latest")

    async def work(reg: Any) -> Any:
        found = await reg.get_manifest(target)
        if platform:
            found = await select_manifest(reg, target, found, platform)
        return found

    found = run_with_registry(connection(plain_http, insecure, registry_config), work)
    desc = {"mediaType": found.media_type, "digest": found.digest, "size": found.size}
    if raw and output == "text" and not descriptor:
        sys.stdout.buffer.write(found.data)
        sys.stdout.buffer.flush()
        return
    if descriptor:
        emit(output, desc, json.dumps(desc, indent=2))
        return
    emit(output, {"reference": str(target), **desc, "manifest": found.json},
         json.dumps(found.json, indent=2, ensure_ascii=False))


@click.command()
@click.argument("ref")
@click.argument("new_tags", nargs=-1, required=True, metavar="NEWTAG...")
@registry_options
@output_option
@handle_errors
def tag(ref: str, new_tags: tuple[str, ...], plain_http: bool, insecure: bool,
        registry_config: str | None, output: str) -> None:
    """Give the manifest REF more tags in its repository."""
    target = ref_arg(ref)
    if not target.reference:
        raise fail(f"{ref}: give the tag or digest to copy from")
    for new in new_tags:
        validate_tag(new)

    async def work(reg: Any) -> str:
        found = await reg.get_manifest(target)
        for new in new_tags:
            await reg.put_manifest(target, new, found.data, found.media_type)
        return str(found.digest)

    digest = run_with_registry(connection(plain_http, insecure, registry_config), work)
    refs = [str(target.with_tag(t)) for t in new_tags]
    emit(output, {"digest": digest, "tagged": refs},
         "\n".join(f"Tagged {r}" for r in refs) + f"\nDigest: {digest}")


@click.command("rm")
@click.argument("ref")
@click.option("--tag-only", is_flag=True,
              help="Remove just the tag, not the manifest (needs tag deletion support).")
@click.option("--force", is_flag=True, help="No error when REF does not exist.")
@registry_options
@output_option
@handle_errors
def rm(ref: str, tag_only: bool, force: bool, plain_http: bool, insecure: bool,
       registry_config: str | None, output: str) -> None:
    """Delete the manifest REF points at (all its tags go with it), or with --tag-only the
    tag alone."""
    target = ref_arg(ref)
    if not target.reference:
        raise fail(f"{ref}: give the tag or digest to delete")
    if tag_only and not target.tag:
        raise fail("--tag-only needs a tag reference")

    async def work(reg: Any) -> str | None:
        try:
            if tag_only:
                await reg.delete_manifest(target, str(target.tag))
                return None
            desc = await reg.resolve(target)
            await reg.delete_manifest(target, desc.digest)
            return str(desc.digest)
        except NotFound:
            if force:
                return ""
            raise ClientError(f"{target} not found") from None

    digest = run_with_registry(connection(plain_http, insecure, registry_config), work)
    if digest == "":
        emit(output, {"reference": str(target), "deleted": False}, f"{target} not found")
        return
    what = str(target) if tag_only else f"{target.repo_ref}@{digest}"
    emit(output, {"reference": str(target), "deleted": what, "digest": digest},
         f"Deleted {what}")



COMMANDS: list[click.Command] = [repos, tags, images, tree, manifest, tag, rm]
