#!/usr/bin/env python3
"""Write a one-layer image as a `docker save` archive from a directory, without dockerd.

No container registry is reachable here, so the cluster's own images (registry.k8s.io/pause and the
CoreDNS image) are made from binaries built locally and imported with `ctr images import`, which reads
this format: manifest.json (RepoTags, Config, Layers), the config JSON (entrypoint, rootfs.diff_ids)
and one layer tar.

    image_archive.py --rootfs DIR --tag NAME:TAG --entrypoint /bin --out image.tar
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path


def layer_tar(rootfs: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0  # reproducible: the same binary gives the same image id
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archive(rootfs: Path, tag: str, entrypoint: list[str], out: Path) -> None:
    layer = layer_tar(rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "scripts/e2e/k8s/image_archive.py"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        add_bytes(tar, layer_name, layer)
        add_bytes(tar, config_name, config)
        add_bytes(tar, "manifest.json", manifest)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--entrypoint", required=True, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_archive(args.rootfs, args.tag, args.entrypoint, args.out)


if __name__ == "__main__":
    main()
