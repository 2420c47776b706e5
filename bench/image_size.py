"""What the server image weighs: each layer compressed (as pushed) and unpacked, and the
installed distributions that weigh most in scaleahead's own layer.

The image is built from the Dockerfile as the test suite builds it (`harness.image`: the
base is a Debian 12 stand-in for `python:3.11-slim`, so only the top layer is the
project's own; the official slim base unpacks to about 130 MB, the stand-in to more).

Run: python -m bench.image_size [--top 15]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

from harness.image import project_image

PACKAGE = re.compile(r"(?:site|dist)-packages/([^/]+)/")


def _read(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    if member is None:
        raise ValueError(f"{name}: not a file of the OCI archive")
    return member.read()


def _blob(archive: tarfile.TarFile, digest: str) -> bytes:
    return _read(archive, f"blobs/{digest.replace(':', '/')}")


def layers(path: Path) -> list[tuple[int, bytes]]:
    """Each layer of the OCI archive's one image, base first: (compressed size, tar)."""
    with tarfile.open(path) as archive:
        index = json.loads(_read(archive, "index.json"))
        manifest = json.loads(_blob(archive, index["manifests"][0]["digest"]))
        return [
            (layer["size"], gzip.decompress(_blob(archive, layer["digest"])))
            for layer in manifest["layers"]
        ]


def by_package(layer: bytes) -> Counter[str]:
    """Bytes of each installed distribution's directory in a layer's tar."""
    sizes: Counter[str] = Counter()
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        for member in tar:
            found = PACKAGE.search(member.name)
            sizes[found.group(1).split("-")[0] if found else "(outside packages)"] += member.size
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    ref, path = project_image()
    print(f"{ref}: OCI archive {path.stat().st_size / 1e6:.0f} MB")
    found = layers(path)
    for i, (compressed, tar) in enumerate(found):
        role = "base (stand-in)" if i == 0 else "scaleahead"
        print(
            f"layer {i} {role:16s} compressed {compressed / 1e6:6.0f} MB  "
            f"unpacked {len(tar) / 1e6:6.0f} MB"
        )
    sizes = by_package(found[-1][1])
    print(f"\nscaleahead's layer by distribution (top {args.top}, MB):")
    for name, size in sizes.most_common(args.top):
        print(f"  {size / 1e6:7.1f}  {name}")


if __name__ == "__main__":
    main()
