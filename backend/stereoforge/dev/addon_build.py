"""``stereoforge addon build --output DIR``: pack the Blender extension into ``DIR/stereoforge-<version>.zip``.

The zip holds ``blender_manifest.toml`` and the add-on's files (``addon/``) at its root, as Blender's "Install
from Disk" and ``bpy.ops.extensions.package_install_files`` expect: the add-on only, no backend, no wheels (it
needs nothing but ``bpy`` and the standard library). Both come from the source checkout this package is
installed from (``pip install -e .``). Entries are written in a fixed order with a fixed date, so the same
sources give the same zip.
"""

from __future__ import annotations

import argparse
import os
import re
import zipfile
from pathlib import Path

from .. import __version__
from ..errors import InputError

MANIFEST = "blender_manifest.toml"
EXTENSION_ID = "stereoforge"
#: Add-on files that are copies of backend modules (standard library only), by their name in the add-on: the shot
#: folder's contract and the job server's HTTP requests. The zip always carries the backend's.
BACKEND_COPIES = {"shot_contract.py": "shot.py", "http_json.py": "http_json.py"}
_FIXED_DATE = (2024, 1, 1, 0, 0, 0)


def checkout_root() -> Path:
    """The source checkout: the folder holding ``blender_manifest.toml`` and ``addon/``."""
    root = Path(__file__).resolve().parents[3]
    if not (root / MANIFEST).is_file() or not (root / "addon" / "__init__.py").is_file():
        raise InputError(f"no Blender add-on sources next to this stereoforge ({root} has no {MANIFEST} and "
                         "addon/__init__.py); build the add-on from a source checkout installed with "
                         "'pip install -e .'")
    return root


def manifest_fields(text: str) -> dict[str, str]:
    """The top-level ``key = "value"`` strings of a manifest (enough to check id and version)."""
    fields = {}
    for line in text.splitlines():
        if line.startswith("["):
            break
        match = re.match(r'\s*([A-Za-z_]+)\s*=\s*"([^"]*)"', line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields


def addon_files(addon_dir: Path) -> list[Path]:
    """The add-on's files, relative to ``addon_dir``, sorted; caches and hidden files left out."""
    files = []
    for path in sorted(addon_dir.rglob("*")):
        rel = path.relative_to(addon_dir)
        if not path.is_file() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.suffix in (".pyc", ".pyo") or rel.name == MANIFEST:
            continue
        files.append(rel)
    return files


def _source(root: Path, rel: Path) -> Path:
    """Where the zip's copy of an add-on file comes from: the backend's copies (:data:`BACKEND_COPIES`) from the
    backend, the rest from ``addon/``."""
    copied = BACKEND_COPIES.get(rel.as_posix())
    return Path(__file__).parents[1] / copied if copied else root / "addon" / rel


def build(output_dir: str | os.PathLike, root: Path | None = None) -> Path:
    """Write ``<output_dir>/stereoforge-<version>.zip``; returns its path.

    Raises :class:`InputError` when the manifest's id or version does not match this backend.
    """
    root = root or checkout_root()
    manifest_text = (root / MANIFEST).read_text(encoding="utf-8")
    fields = manifest_fields(manifest_text)
    if fields.get("id") != EXTENSION_ID:
        raise InputError(f"{root / MANIFEST} has id {fields.get('id')!r}; it must be {EXTENSION_ID!r}")
    if fields.get("version") != __version__:
        raise InputError(f"{root / MANIFEST} has version {fields.get('version')!r} but the backend is "
                         f"{__version__}; set version = \"{__version__}\" in the manifest")
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output '{output}' is a file; give a folder")
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"{EXTENSION_ID}-{__version__}.zip"
    temp = output / f".{target.name}.tmp"
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = [(MANIFEST, manifest_text.encode("utf-8"))]
        entries += [(rel.as_posix(), _source(root, rel).read_bytes()) for rel in addon_files(root / "addon")]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    os.replace(temp, target)
    return target


def cmd_build(args: argparse.Namespace) -> int:
    print(build(args.output))
    return 0


def register(subparsers) -> None:
    """Add ``addon build`` to the ``stereoforge`` command line."""
    p = subparsers.add_parser("addon", help="the Blender add-on: build its extension zip",
                              description="The StereoForge Blender add-on.")
    sub = p.add_subparsers(dest="addon_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="write DIR/stereoforge-<version>.zip for Blender's Install from Disk",
                       description="Pack blender_manifest.toml and addon/ into DIR/stereoforge-<version>.zip, "
                                   "which installs in Blender 4.2+ (Edit > Preferences > Get Extensions > "
                                   "Install from Disk). The zip holds the add-on only: the backend is "
                                   "installed separately.")
    b.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write the zip into")
    b.set_defaults(func=cmd_build)
