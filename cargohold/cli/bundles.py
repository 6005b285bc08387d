"""``cargohold bundle``: OPA bundles (.manifest, Rego and data files) in OCI registries."""

from __future__ import annotations

import os
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
    from cargohold.client.content import BlobSource

    target = ref_arg(ref)
    if target.digest:
        raise fail(f"{ref}: push to a tag, not to a digest")
    target = target if target.tag else target.with_tag("latest")
    path = Path(source)
    if not path.exists():
        raise fail(f"bundle source {source} does not exist")
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

        result = run_with_registry(connection(plain_http, insecure, registry_config), work)
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

    manifest, _pulled = run_with_registry(connection(plain_http, insecure, registry_config), work)
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



COMMANDS: list[click.Command] = [bundle]
