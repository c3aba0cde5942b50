"""The shot folder's contract is one file (stereoforge/shot.py): the add-on carries the same file, in its source
tree and in the zip the build makes."""

from __future__ import annotations

import zipfile
from pathlib import Path

from stereoforge import shot
from stereoforge.dev import addon_build

ROOT = Path(__file__).resolve().parents[1]
BACKEND = Path(shot.__file__)


def test_the_addon_carries_the_backend_shot_module_unchanged(tmp_path):
    assert (ROOT / "addon" / addon_build.SHOT_CONTRACT).read_bytes() == BACKEND.read_bytes(), (
        f"addon/{addon_build.SHOT_CONTRACT} differs from {BACKEND}: copy it again "
        f"(cp {BACKEND} addon/{addon_build.SHOT_CONTRACT})")
    with zipfile.ZipFile(addon_build.build(tmp_path)) as archive:
        assert archive.read(addon_build.SHOT_CONTRACT) == BACKEND.read_bytes()


def test_the_shot_module_needs_only_the_standard_library():
    import ast
    import sys

    tree = ast.parse(BACKEND.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))


def test_the_stages_downstream_of_the_eyes_are_cleared_with_them():
    assert shot.downstream("eyes") == ("inpaint", "composite", "encode")
    assert shot.downstream("ingest") == ("cloud", "eyes", "inpaint", "composite", "encode")
    assert shot.downstream("encode") == ()
