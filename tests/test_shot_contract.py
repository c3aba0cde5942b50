"""The add-on's copies of backend modules are the same files: the shot folder's contract (stereoforge/shot.py, as
addon/shot_contract.py) and the job server's HTTP requests (stereoforge/http_json.py), in the add-on's source tree
and in the zip the build makes; each needs only the standard library."""

from __future__ import annotations

import ast
import sys
import zipfile
from pathlib import Path

import pytest

from stereoforge import shot
from stereoforge.dev import addon_build

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(shot.__file__).parent
COPIES = sorted(addon_build.BACKEND_COPIES.items())


def test_the_copies_include_the_shot_contract_and_the_http_requests():
    assert dict(COPIES) == {"shot_contract.py": "shot.py", "http_json.py": "http_json.py"}


@pytest.mark.parametrize("copy,original", COPIES)
def test_the_addon_carries_the_backend_module_unchanged(tmp_path, copy, original):
    backend = PACKAGE / original
    assert (ROOT / "addon" / copy).read_bytes() == backend.read_bytes(), (
        f"addon/{copy} differs from {backend}: copy it again (cp {backend} addon/{copy})")
    with zipfile.ZipFile(addon_build.build(tmp_path)) as archive:
        assert archive.read(copy) == backend.read_bytes()


@pytest.mark.parametrize("original", [original for _, original in COPIES])
def test_the_copied_module_needs_only_the_standard_library(original):
    tree = ast.parse((PACKAGE / original).read_text())
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
