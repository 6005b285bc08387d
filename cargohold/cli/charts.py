"""``cargohold chart``: Helm charts in OCI registries, packaged and pushed as Helm 3 does."""

from __future__ import annotations

import json
import shutil
import tempfile
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
from cargohold.client.errors import ClientError
from cargohold.client.reference import (
    parse_reference,
    validate_tag,
)


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
    from cargohold.client.content import BlobSource
    from cargohold.client.helm_archive import package_chart, read_archive_metadata

    base = parse_reference(remote, require_repository=False)
    if base.tag or base.digest:
        raise fail(f"{remote}: give REGISTRY/NAMESPACE without a tag; the chart version is "
                    "the tag")
    source = Path(chart_path)
    if not source.exists():
        raise fail(f"chart {chart_path} does not exist")
    tmpdir = Path(tempfile.mkdtemp(prefix="cargohold-chart-"))
    try:
        if source.is_dir():
            archive, meta = package_chart(source, tmpdir)
            prov = None
        else:
            archive, meta = source, read_archive_metadata(source)
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

        result = run_with_registry(connection(plain_http, insecure, registry_config), work)
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
        raise fail(f"{ref} names version {target.tag} but --version says {version}")

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
        connection(plain_http, insecure, registry_config), work)
    archive = Path(outdir) / f"{name}-{ver}.tgz"
    if untar:
        extract_archive(archive, Path(outdir), f"chart {name}-{ver}.tgz")
        archive.unlink()
    data = {"reference": str(resolved), "digest": manifest.digest, "name": name,
            "version": ver, "files": [f.to_dict() for f in pulled.files],
            "untarred": str(Path(outdir) / name) if untar else None}
    emit(output, data, f"Pulled: {resolved}\nDigest: {manifest.digest}\n"
                       f"{'Unpacked into ' + str(Path(outdir) / name) if untar else archive}")



COMMANDS: list[click.Command] = [chart]
