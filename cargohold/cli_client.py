"""The client half of the ``cargohold`` command line: push, pull and manage OCI artifacts on any
registry (Cargohold, the CNCF registry, zot, ECR, ...).

``register(group)`` adds the commands to a click group. Every command that prints data takes
``--output json``; errors are one line on stderr with exit code 1; usage errors exit with 2.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cargohold.client import mediatypes as mt
from cargohold.client.errors import ClientError, NotFound, RegistryError
from cargohold.client.reference import (
    Reference,
    parse_reference,
    parse_registry,
    validate_digest,
    validate_tag,
)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


# ------------------------------------------------------------------------------ plumbing

def _fail(message: str) -> click.ClickException:
    return click.ClickException(" ".join(message.split()))


def handle_errors(fn: F) -> F:
    """Turn every failure into a one-line ``Error: ...`` with exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import aiohttp

        from cargohold.client.transport import describe_exception

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ClientError as exc:
            raise _fail(str(exc)) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _fail(f"network error: {describe_exception(exc)}") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise _fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("CARGOHOLD_DEBUG"):
                raise
            raise _fail(f"unexpected {type(exc).__name__}: {exc} (set CARGOHOLD_DEBUG=1 for "
                        "details)") from None

    return wrapper  # type: ignore[return-value]


def registry_options(fn: F) -> F:
    fn = click.option("--registry-config", type=click.Path(dir_okay=False), default=None,
                      help="Docker config file with logins [default: $DOCKER_CONFIG/config.json "
                           "or ~/.docker/config.json].")(fn)
    fn = click.option("--insecure", is_flag=True,
                      help="Skip TLS certificate verification.")(fn)
    fn = click.option("--plain-http", is_flag=True,
                      help="Use HTTP instead of HTTPS (automatic for localhost and "
                           "127.0.0.1).")(fn)
    return fn


def output_option(fn: F) -> F:
    return click.option("--output", "output", type=click.Choice(["text", "json"]),
                        default="text", show_default=True,
                        help="Print text for people or JSON for scripts.")(fn)


def transfer_options(fn: F) -> F:
    fn = click.option("--no-progress", is_flag=True,
                      help="No progress bars (they only show on a terminal anyway).")(fn)
    fn = click.option("--concurrency", type=click.IntRange(1, 16), default=3,
                      show_default=True, help="Blobs transferred at once.")(fn)
    return fn


def run_with_registry(opts: dict[str, Any], work: Callable[[Any], Awaitable[T]],
                      credentials: dict[str, Any] | None = None) -> T:
    from cargohold.client.registry import Registry
    from cargohold.client.transport import Transport, TransportOptions

    options = TransportOptions(plain_http=bool(opts.get("plain_http")),
                               insecure=bool(opts.get("insecure")),
                               config_path=opts.get("registry_config"),
                               credentials=credentials or {})

    async def main() -> T:
        async with Transport(options) as transport:
            return await work(Registry(transport))

    return asyncio.run(main())


def transfers(no_progress: bool) -> Any:
    from cargohold.client.progress import Transfers

    return Transfers(enabled=False if no_progress else None)


def emit(output: str, data: Any, text: str | Callable[[], str]) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        message = text() if callable(text) else text
        if message:
            click.echo(message)


def ref_arg(text: str, **kwargs: Any) -> Reference:
    return parse_reference(text, **kwargs)


def _opts(**kwargs: Any) -> dict[str, Any]:
    return kwargs


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
        raise _fail("the password is empty")
    creds = Credentials(username=username or "", password=password)
    opts = _opts(plain_http=plain_http, insecure=insecure, registry_config=registry_config)

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
    from cargohold.client.registry import BlobSource, Descriptor

    target = ref_arg(ref)
    if target.digest:
        raise _fail(f"{ref}: push to a tag (or to a repository), not to a digest")
    if artifact_type is not None and not artifact_type.strip():
        raise _fail("--artifact-type is empty")
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
            raise _fail(f"config {spec.path} is not a file")
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

        result = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                         registry_config=registry_config), work)
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

    result = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                     registry_config=registry_config), work)
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


# ------------------------------------------------------------------------------ charts

@click.group()
def chart() -> None:
    """Helm charts in OCI registries (packaged and pushed exactly as Helm 3 does)."""


@chart.command("push")
@click.argument("chart_path", metavar="CHART_DIR|CHART.tgz")
@click.argument("remote", metavar="REGISTRY/NAMESPACE")
@click.option("--creation-time", metavar="RFC3339",
              help="The org.opencontainers.image.created annotation [default: the archive's "
                   "modification time, as Helm does].")
@registry_options
@transfer_options
@output_option
@handle_errors
def chart_push(chart_path: str, remote: str, creation_time: str | None, plain_http: bool,
               insecure: bool, registry_config: str | None, concurrency: int,
               no_progress: bool, output: str) -> None:
    """Push a chart like `helm push CHART oci://REGISTRY/NAMESPACE`: it lands at
    NAMESPACE/<name>:<version> (a '+' in the version becomes '_' in the tag)."""
    from cargohold.client import helm
    from cargohold.client.artifact import upload_all
    from cargohold.client.registry import BlobSource

    base = parse_reference(remote, require_repository=False)
    if base.tag or base.digest:
        raise _fail(f"{remote}: give REGISTRY/NAMESPACE without a tag; the chart version is "
                    "the tag")
    source = Path(chart_path)
    if not source.exists():
        raise _fail(f"chart {chart_path} does not exist")
    tmpdir = Path(tempfile.mkdtemp(prefix="cargohold-chart-"))
    try:
        if source.is_dir():
            archive, meta = helm.package_chart(source, tmpdir)
            prov = None
        else:
            archive, meta = source, helm.read_archive_metadata(source)
            prov_path = Path(str(source) + ".prov")
            prov = prov_path if prov_path.is_file() else None
        created = creation_time or helm.rfc3339(archive.stat().st_mtime)
        repository = f"{base.repository}/{meta.name}" if base.repository else meta.name
        target = parse_reference(f"{base.host}/{repository}:"
                                 f"{helm.tag_for_version(meta.version)}")
        config_data = meta.config_json()
        config_source = BlobSource.from_bytes(config_data, mt.HELM_CONFIG, label="config")
        chart_source = BlobSource.from_file(archive, mt.HELM_CHART, label=archive.name)
        layers = [chart_source]
        if prov is not None:
            layers.append(BlobSource.from_file(prov, mt.HELM_PROV, label=prov.name))
        manifest = helm.chart_manifest(
            helm.go_descriptor(mt.HELM_CONFIG, config_source.digest, config_source.size),
            [helm.go_descriptor(s.media_type, s.digest, s.size) for s in layers],
            helm.oci_annotations(meta, created))

        async def work(reg: Any) -> Any:
            with transfers(no_progress) as bars:
                await upload_all(reg, target, [config_source, *layers], bars, concurrency)
            return await reg.put_manifest(target, target.tag, manifest, mt.OCI_MANIFEST)

        result = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                         registry_config=registry_config), work)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    data = {"reference": str(target), "digest": result.digest, "name": meta.name,
            "version": meta.version, "config": config_source.descriptor().to_dict(),
            "layers": [s.descriptor().to_dict() for s in layers]}
    emit(output, data, f"Pushed: {target}\nDigest: {result.digest}")


@chart.command("pull")
@click.argument("ref", metavar="REGISTRY/NAMESPACE/NAME[:VERSION]")
@click.option("--version", "version", help="Chart version [default: the highest].")
@click.option("-o", "--output-dir", "outdir", type=click.Path(file_okay=False), default=".",
              show_default=True)
@click.option("--untar", is_flag=True, help="Unpack the chart into the folder.")
@click.option("--prov", is_flag=True, help="Also fetch the provenance file, if pushed.")
@registry_options
@transfer_options
@output_option
@handle_errors
def chart_pull(ref: str, version: str | None, outdir: str, untar: bool, prov: bool,
               plain_http: bool, insecure: bool, registry_config: str | None,
               concurrency: int, no_progress: bool, output: str) -> None:
    """Pull a chart like `helm pull oci://...`: writes <name>-<version>.tgz."""
    from cargohold.client import helm
    from cargohold.client.artifact import pull_layers
    from cargohold.client.files import extract_archive

    target = ref_arg(ref)
    if target.tag and version and helm.tag_for_version(version) != target.tag:
        raise _fail(f"{ref} names version {target.tag} but --version says {version}")

    async def work(reg: Any) -> Any:
        resolved = target
        if version:
            resolved = target.with_tag(validate_tag(helm.tag_for_version(version)))
        elif not target.reference:
            tags = await reg.list_tags(target)
            best = helm.highest_version(tags)
            if best is None:
                raise ClientError(f"no chart versions found in {target.repo_ref}")
            resolved = target.with_tag(best)
        manifest = await reg.get_manifest(resolved)
        config = manifest.config()
        if manifest.is_index or config is None or config.media_type != mt.HELM_CONFIG:
            found = config.media_type if config else manifest.media_type
            raise ClientError(f"{resolved} is not a Helm chart (config media type {found})")
        meta = json.loads(await reg.fetch_blob(resolved, config))
        name, ver = str(meta.get("name", "chart")), str(meta.get("version", "0"))
        layers = [d for d in manifest.layers()
                  if d.media_type in (mt.HELM_CHART, "application/tar+gzip")]
        if not layers:
            raise ClientError(f"{resolved} has no chart content layer")
        rename = {layers[0].digest: f"{name}-{ver}.tgz"}
        wanted = [layers[0].media_type]
        if prov:
            provs = [d for d in manifest.layers() if d.media_type == mt.HELM_PROV]
            if provs:
                rename[provs[0].digest] = f"{name}-{ver}.tgz.prov"
                wanted.append(mt.HELM_PROV)
        with transfers(no_progress) as bars:
            pulled = await pull_layers(reg, resolved, manifest, Path(outdir), bars, wanted,
                                       concurrency, unpack=False, rename=rename)
        return resolved, manifest, name, ver, pulled

    resolved, manifest, name, ver, pulled = run_with_registry(
        _opts(plain_http=plain_http, insecure=insecure, registry_config=registry_config), work)
    archive = Path(outdir) / f"{name}-{ver}.tgz"
    if untar:
        extract_archive(archive, Path(outdir), f"chart {name}-{ver}.tgz")
        archive.unlink()
    data = {"reference": str(resolved), "digest": manifest.digest, "name": name,
            "version": ver, "files": [f.to_dict() for f in pulled.files],
            "untarred": str(Path(outdir) / name) if untar else None}
    emit(output, data, f"Pulled: {resolved}\nDigest: {manifest.digest}\n"
                       f"{'Unpacked into ' + str(Path(outdir) / name) if untar else archive}")


# ------------------------------------------------------------------------------ OPA bundles

@click.group()
def bundle() -> None:
    """OPA bundles (.manifest, Rego and data files) in OCI registries."""


@bundle.command("push")
@click.argument("source", metavar="DIR|BUNDLE.tar.gz")
@click.argument("ref", metavar="REPO:TAG")
@click.option("--oci-layer", is_flag=True,
              help="Type the layer application/vnd.oci.image.layer.v1.tar+gzip, which OPA's "
                   "own OCI downloader requires (default: the OPA media type).")
@click.option("-a", "--annotation", "annotations", multiple=True, metavar="KEY=VALUE")
@registry_options
@transfer_options
@output_option
@handle_errors
def bundle_push(source: str, ref: str, oci_layer: bool, annotations: tuple[str, ...],
                plain_http: bool, insecure: bool, registry_config: str | None,
                concurrency: int, no_progress: bool, output: str) -> None:
    """Pack DIR as an OPA bundle (or take a built bundle.tar.gz) and push it to REPO:TAG."""
    from cargohold.client import opa
    from cargohold.client.artifact import build_manifest, parse_annotations, upload_all
    from cargohold.client.registry import BlobSource

    target = ref_arg(ref)
    if target.digest:
        raise _fail(f"{ref}: push to a tag, not to a digest")
    target = target if target.tag else target.with_tag("latest")
    path = Path(source)
    if not path.exists():
        raise _fail(f"bundle source {source} does not exist")
    manifest_annotations = parse_annotations(annotations)
    tmpdir = Path(tempfile.mkdtemp(prefix="cargohold-bundle-"))
    try:
        if path.is_dir():
            archive = tmpdir / opa.BUNDLE_TITLE
            names = opa.pack_bundle(path, archive)
            config_data = opa.manifest_config(path)
        else:
            archive = path
            config_data = opa.inspect_bundle_archive(path)
            names = []
        layer_type = mt.OCI_LAYER_GZIP if oci_layer else mt.OPA_LAYER
        config_source = BlobSource.from_bytes(config_data, mt.OPA_CONFIG, label="config")
        layer = BlobSource.from_file(archive, layer_type, label=opa.BUNDLE_TITLE)
        layer.annotations = {mt.ANNOTATION_TITLE: opa.BUNDLE_TITLE}
        manifest = build_manifest(config_source.descriptor(), [layer.descriptor()],
                                  annotations=manifest_annotations)

        async def work(reg: Any) -> Any:
            with transfers(no_progress) as bars:
                await upload_all(reg, target, [config_source, layer], bars, concurrency)
            return await reg.put_manifest(target, target.tag, manifest, mt.OCI_MANIFEST)

        result = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                         registry_config=registry_config), work)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    data = {"reference": str(target), "digest": result.digest, "files": names,
            "config": config_source.descriptor().to_dict(),
            "layers": [layer.descriptor().to_dict()]}
    emit(output, data, f"Pushed {target}\nDigest: {result.digest}")


@bundle.command("pull")
@click.argument("ref")
@click.option("-o", "--output-dir", "outdir", type=click.Path(file_okay=False), default=".",
              show_default=True)
@click.option("--extract", is_flag=True, help="Unpack the bundle's files into the folder.")
@registry_options
@transfer_options
@output_option
@handle_errors
def bundle_pull(ref: str, outdir: str, extract: bool, plain_http: bool, insecure: bool,
                registry_config: str | None, concurrency: int, no_progress: bool,
                output: str) -> None:
    """Pull an OPA bundle: writes bundle.tar.gz (or its files with --extract)."""
    from cargohold.client import opa
    from cargohold.client.artifact import pull_layers
    from cargohold.client.files import extract_archive

    target = ref_arg(ref)
    if not target.reference:
        target = target.with_tag("latest")

    async def work(reg: Any) -> Any:
        manifest = await reg.get_manifest(target)
        layers = [d for d in manifest.layers() if d.media_type in opa.LAYER_TYPES]
        if manifest.is_index or not layers:
            raise ClientError(f"{target} is not an OPA bundle (no bundle layer)")
        rename = {layers[0].digest: opa.BUNDLE_TITLE}
        with transfers(no_progress) as bars:
            pulled = await pull_layers(reg, target, manifest, Path(outdir), bars,
                                       [layers[0].media_type], concurrency, unpack=False,
                                       rename=rename)
        return manifest, pulled

    manifest, _pulled = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                                registry_config=registry_config), work)
    archive = Path(outdir) / opa.BUNDLE_TITLE
    names: list[str] = []
    if extract:
        names = extract_archive(archive, Path(outdir), f"bundle {target}")
        archive.unlink()
    data = {"reference": str(target), "digest": manifest.digest,
            "files": [n.lstrip("/") for n in names] if extract else [opa.BUNDLE_TITLE]}
    emit(output, data, f"Pulled {target}\nDigest: {manifest.digest}\n" + (
        "\n".join(f"  {os.path.join(outdir, n.lstrip('/'))}" for n in names) if extract
        else f"  {archive}"))


# ------------------------------------------------------------------------------ inspection

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

    root = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                   registry_config=registry_config), work)
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

    names = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                    registry_config=registry_config), work)
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
        raise _fail(f"{repo}: give a repository without tag or digest")

    async def work(reg: Any) -> list[str]:
        return list(await reg.list_tags(target))

    names = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                    registry_config=registry_config), work)
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
        raise _fail(f"{repo}: give a repository without tag or digest")
    opts = _opts(plain_http=plain_http, insecure=insecure, registry_config=registry_config)
    details: list[dict[str, Any]] | None = None
    source = "v2"
    if api in ("auto", "ecr"):
        from cargohold.client.auth import DockerConfig
        from cargohold.client.transport import Transport, TransportOptions

        transport = Transport(TransportOptions(plain_http=plain_http, insecure=insecure,
                                               config_path=registry_config))
        creds = DockerConfig(Path(registry_config) if registry_config else None).get(
            target.host)
        try:
            details = ecr_describe_images(transport.base_url(target.host), target.repository,
                                          tag_status, creds.username, creds.password,
                                          verify=not insecure)
            source = "ecr"
        except NoEcrApi as exc:
            if api == "ecr":
                raise _fail(f"{target.host} does not offer the ECR API ({exc})") from None
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
                         str(d.get("imagePushedAt") or "-")))
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

    found = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                    registry_config=registry_config), work)
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
        raise _fail(f"{ref}: give the tag or digest to copy from")
    for new in new_tags:
        validate_tag(new)

    async def work(reg: Any) -> str:
        found = await reg.get_manifest(target)
        for new in new_tags:
            await reg.put_manifest(target, new, found.data, found.media_type)
        return str(found.digest)

    digest = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                     registry_config=registry_config), work)
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
        raise _fail(f"{ref}: give the tag or digest to delete")
    if tag_only and not target.tag:
        raise _fail("--tag-only needs a tag reference")

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

    digest = run_with_registry(_opts(plain_http=plain_http, insecure=insecure,
                                     registry_config=registry_config), work)
    if digest == "":
        emit(output, {"reference": str(target), "deleted": False}, f"{target} not found")
        return
    what = str(target) if tag_only else f"{target.repo_ref}@{digest}"
    emit(output, {"reference": str(target), "deleted": what, "digest": digest},
         f"Deleted {what}")


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
        raise _fail(f"{dst}: copy to a tag or repository, not to a digest")
    if not dest.tag and source.tag:
        dest = dest.with_tag(source.tag)

    async def work(reg: Any) -> Any:
        with transfers(no_progress) as bars:
            copier = Copier(reg, source, dest, bars, recursive, platform, concurrency)
            digest, media_type, size = await copier.run()
        return digest, media_type, size, copier.stats

    digest, media_type, size, stats = run_with_registry(
        _opts(plain_http=plain_http, insecure=insecure, registry_config=registry_config), work)
    shown = str(dest) if dest.tag else f"{dest.repo_ref}@{digest}"
    data = {"source": str(source), "destination": shown, "digest": digest,
            "mediaType": media_type, "size": size, **stats.to_dict()}
    counts = ", ".join(f"{n} {k}" for k, n in sorted(stats.to_dict()["blobs"].items()))
    emit(output, data, f"Copied {source} -> {shown}\nDigest: {digest}\n"
                       f"Blobs: {counts or 'none'}; referrers: {len(stats.referrers)}")


# ------------------------------------------------------------------------------ registration

COMMANDS: list[click.Command] = [login, logout, push, pull, chart, bundle, tree, repos, tags,
                                 images, manifest, tag, rm, copy]


def register(group: click.Group) -> None:
    """Add the client commands to the ``cargohold`` group."""
    for command in COMMANDS:
        group.add_command(command)
