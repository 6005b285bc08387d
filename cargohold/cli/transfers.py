"""Moving artifacts: ``login``/``logout``, ``push``, ``pull`` and ``copy`` between registries."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from cargohold.cli.common import (
    connection,
    emit,
    fail,
    handle_errors,
    output_option,
    ref_arg,
    registry_options,
    run_with_registry,
    transfer_options,
    transfers,
)
from cargohold.client import mediatypes as mt
from cargohold.client.errors import ClientError, NotFound, RegistryError
from cargohold.client.reference import (
    Reference,
    parse_reference,
    parse_registry,
    validate_digest,
)

# ------------------------------------------------------------------------------ login/logout

@click.command()
@click.argument("registry")
@click.option("-u", "--username", help="User name (or access key id).")
@click.option("-p", "--password", help="Password (or secret access key); prefer "
                                       "--password-stdin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@registry_options
@output_option
@handle_errors
def login(registry: str, username: str | None, password: str | None, password_stdin: bool,
          plain_http: bool, insecure: bool, registry_config: str | None, output: str) -> None:
    """Log in to REGISTRY and store the credentials in the Docker config file."""
    from cargohold.client.auth import Credentials, DockerConfig

    host = parse_registry(registry)
    if password_stdin and password:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
        if not username:
            raise click.UsageError("--password-stdin needs --username")
    if not username:
        if not sys.stdin.isatty():
            raise click.UsageError("no --username given and standard input is not a terminal")
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            raise click.UsageError("no password given: use --password-stdin or --password")
        password = click.prompt("Password", hide_input=True)
    if not password:
        raise fail("the password is empty")
    creds = Credentials(username=username or "", password=password)
    opts = connection(plain_http, insecure, registry_config)

    async def verify(reg: Any) -> None:
        try:
            await reg.ping(host)
        except RegistryError as exc:
            if exc.status in (401, 403):
                raise ClientError(f"login to {host} failed: credentials rejected") from None
            raise

    run_with_registry(opts, verify, credentials={host: creds})
    config = DockerConfig(Path(registry_config) if registry_config else None)
    where = config.store(host, creds)
    emit(output, {"registry": host, "username": username, "stored": where},
         f"Login Succeeded (credentials for {host} stored in {where})")


@click.command()
@click.argument("registry")
@click.option("--registry-config", type=click.Path(dir_okay=False), default=None,
              help="Docker config file [default: $DOCKER_CONFIG/config.json].")
@output_option
@handle_errors
def logout(registry: str, registry_config: str | None, output: str) -> None:
    """Remove the stored credentials for REGISTRY."""
    from cargohold.client.auth import DockerConfig

    host = parse_registry(registry)
    removed = DockerConfig(Path(registry_config) if registry_config else None).erase(host)
    emit(output, {"registry": host, "removed": removed},
         f"Removed login credentials for {host}" if removed else f"Not logged in to {host}")


# ------------------------------------------------------------------------------ push / pull

async def _subject_descriptor(reg: Any, ref: Reference, subject: str) -> Any:
    if ":" in subject and "/" not in subject and "@" not in subject:
        target = ref.with_digest(validate_digest(subject))
    else:
        target = parse_reference(subject)
        if (target.host, target.repository) != (ref.host, ref.repository):
            raise ClientError(f"the subject {subject} must be in the same repository as "
                              f"{ref.repo_ref}")
        if not target.reference:
            raise ClientError(f"the subject {subject} needs a tag or digest")
    try:
        return await reg.resolve(target)
    except NotFound:
        raise ClientError(f"subject {target} not found") from None


@click.command()
@click.argument("ref")
@click.argument("files", nargs=-1)
@click.option("--artifact-type", help="The manifest's artifactType (default for artifacts "
                                      f"without --config: {mt.UNKNOWN_ARTIFACT}).")
@click.option("--config", "config", metavar="FILE[:MEDIATYPE]",
              help="A config blob (default media type "
                   f"{mt.UNKNOWN_CONFIG}); without it the empty config is used.")
@click.option("-a", "--annotation", "annotations", multiple=True, metavar="KEY=VALUE",
              help="A manifest annotation (repeatable).")
@click.option("--annotation-file", type=click.Path(dir_okay=False),
              help='oras-style JSON: {"$manifest": {...}, "<file title>": {...}}.')
@click.option("--subject", metavar="DIGEST|REF",
              help="Attach the artifact to this manifest (a referrer: signature, SBOM, ...).")
@registry_options
@transfer_options
@output_option
@handle_errors
def push(ref: str, files: tuple[str, ...], artifact_type: str | None, config: str | None,
         annotations: tuple[str, ...], annotation_file: str | None, subject: str | None,
         plain_http: bool, insecure: bool, registry_config: str | None, concurrency: int,
         no_progress: bool, output: str) -> None:
    """Push FILES (a folder becomes a tar.gz layer) as an OCI artifact to REF.

    Each FILE may carry a media type: FILE:MEDIATYPE. Layers are titled with their file names
    (org.opencontainers.image.title), so `pull` can write them back.
    """
    from cargohold.client.artifact import (
        build_manifest,
        load_annotation_file,
        parse_annotations,
        parse_file_arg,
        prepare_layers,
        push_manifest,
        upload_all,
    )
    from cargohold.client.content import BlobSource, Descriptor

    target = ref_arg(ref)
    if target.digest:
        raise fail(f"{ref}: push to a tag (or to a repository), not to a digest")
    if artifact_type is not None and not artifact_type.strip():
        raise fail("--artifact-type is empty")
    specs = [parse_file_arg(f) for f in files]
    manifest_annotations = parse_annotations(annotations)
    per_file: dict[str, dict[str, str]] = {}
    config_annotations: dict[str, str] = {}
    if annotation_file:
        loaded = load_annotation_file(Path(annotation_file))
        manifest_annotations = {**loaded.pop("$manifest", {}), **manifest_annotations}
        config_annotations = loaded.pop("$config", {})
        per_file = loaded
    config_source: BlobSource
    if config:
        spec = parse_file_arg(config, "config file")
        if not spec.path.is_file():
            raise fail(f"config {spec.path} is not a file")
        config_source = BlobSource.from_file(spec.path, spec.media_type or mt.UNKNOWN_CONFIG,
                                             label="config")
    else:
        config_source = BlobSource.from_bytes(mt.EMPTY_JSON, mt.OCI_EMPTY, label="config")
        artifact_type = artifact_type or mt.UNKNOWN_ARTIFACT
    config_source.annotations = config_annotations
    prepared = prepare_layers(specs, per_file)
    try:
        async def work(reg: Any) -> dict[str, Any]:
            subject_desc: Descriptor | None = None
            if subject:
                subject_desc = await _subject_descriptor(reg, target, subject)
            with transfers(no_progress) as bars:
                outcomes = await upload_all(reg, target, [config_source, *prepared.layers],
                                            bars, concurrency)
            manifest = build_manifest(config_source.descriptor(),
                                      [s.descriptor() for s in prepared.layers],
                                      artifact_type=artifact_type,
                                      annotations=manifest_annotations, subject=subject_desc)
            tags = [target.tag] if target.tag else ([] if subject_desc else ["latest"])
            result = await push_manifest(reg, target, manifest, mt.OCI_MANIFEST, tags,
                                         subject_desc, artifact_type, manifest_annotations)
            return {
                "reference": str(target.with_tag(tags[0]) if tags else
                                 target.with_digest(result.digest)),
                "digest": result.digest, "mediaType": mt.OCI_MANIFEST, "size": len(manifest),
                "artifactType": artifact_type or config_source.media_type,
                "subject": subject_desc.digest if subject_desc else None,
                "layers": [{**s.descriptor().to_dict(), "upload": outcomes.get(s.digest)}
                           for s in prepared.layers],
            }

        result = run_with_registry(connection(plain_http, insecure, registry_config), work)
    finally:
        prepared.cleanup()

    def text() -> str:
        lines = [f"Pushed {result['reference']}", f"Digest: {result['digest']}"]
        for layer in result["layers"]:
            title = layer.get("annotations", {}).get(mt.ANNOTATION_TITLE, layer["digest"])
            lines.append(f"  {title}  {layer['digest']}  ({layer['upload']})")
        return "\n".join(lines)

    emit(output, result, text)


@click.command()
@click.argument("ref")
@click.option("-o", "--output-dir", "outdir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Folder to write the layers to.")
@click.option("--media-type", "media_types", multiple=True,
              help="Only layers of this media type (repeatable).")
@click.option("--platform", help="For an index: the os/arch[/variant] to pull.")
@click.option("--no-unpack", is_flag=True, help="Keep packed folders as .tar.gz files.")
@registry_options
@transfer_options
@output_option
@handle_errors
def pull(ref: str, outdir: str, media_types: tuple[str, ...], platform: str | None,
         no_unpack: bool, plain_http: bool, insecure: bool, registry_config: str | None,
         concurrency: int, no_progress: bool, output: str) -> None:
    """Pull the layers of REF into a folder, named by their titles, each digest verified.

    Nothing is written outside the folder; nothing at all if any layer fails verification.
    """
    from cargohold.client.artifact import pull_layers, select_manifest

    target = ref_arg(ref)
    if not target.reference:
        target = target.with_tag("latest")

    async def work(reg: Any) -> Any:
        manifest = await select_manifest(reg, target, await reg.get_manifest(target), platform)
        with transfers(no_progress) as bars:
            return await pull_layers(reg, target, manifest, Path(outdir), bars,
                                     list(media_types) or None, concurrency,
                                     unpack=not no_unpack)

    result = run_with_registry(connection(plain_http, insecure, registry_config), work)
    data = {"reference": result.reference, "digest": result.digest,
            "outputDir": str(Path(outdir)),
            "files": [f.to_dict() for f in result.files],
            "skipped": [d.to_dict() for d in result.skipped]}

    def text() -> str:
        lines = [f"Pulled {result.reference}", f"Digest: {result.digest}"]
        for f in result.files:
            lines.append(f"  {os.path.join(outdir, f.path)}{'/ (unpacked)' if f.unpacked else ''}"
                         f"  {f.digest}")
        if result.skipped:
            lines.append(f"  skipped {len(result.skipped)} layer(s) without a title")
        if not result.files and not result.skipped:
            lines.append("  no layers matched")
        return "\n".join(lines)

    emit(output, data, text)


# ------------------------------------------------------------------------------ copy

@click.command()
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True,
              help="Also copy referrers (signatures, SBOMs, ...), recursively.")
@click.option("--platform", help="From an index, copy only this os/arch[/variant].")
@registry_options
@transfer_options
@output_option
@handle_errors
def copy(src: str, dst: str, recursive: bool, platform: str | None, plain_http: bool,
         insecure: bool, registry_config: str | None, concurrency: int, no_progress: bool,
         output: str) -> None:
    """Copy SRC to DST (any two registries; blobs are mounted across repositories of the same
    registry). An index is copied with all its platforms."""
    from cargohold.client.copy import Copier

    source = ref_arg(src)
    if not source.reference:
        source = source.with_tag("latest")
    dest = ref_arg(dst)
    if dest.digest:
        raise fail(f"{dst}: copy to a tag or repository, not to a digest")
    if not dest.tag and source.tag:
        dest = dest.with_tag(source.tag)

    async def work(reg: Any) -> Any:
        with transfers(no_progress) as bars:
            copier = Copier(reg, source, dest, bars, recursive, platform, concurrency)
            digest, media_type, size = await copier.run()
        return digest, media_type, size, copier.stats

    digest, media_type, size, stats = run_with_registry(
        connection(plain_http, insecure, registry_config), work)
    shown = str(dest) if dest.tag else f"{dest.repo_ref}@{digest}"
    data = {"source": str(source), "destination": shown, "digest": digest,
            "mediaType": media_type, "size": size, **stats.to_dict()}
    counts = ", ".join(f"{n} {k}" for k, n in sorted(stats.to_dict()["blobs"].items()))
    emit(output, data, f"Copied {source} -> {shown}\nDigest: {digest}\n"
                       f"Blobs: {counts or 'none'}; referrers: {len(stats.referrers)}")



COMMANDS: list[click.Command] = [login, logout, push, pull, copy]
