"""One definition per option: the command line, the job server's body, shot.json and the add-on agree with the
fields of ``ConvertSpec`` (stereoforge.spec), and a drift in any of them is caught."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stereoforge.cli import build_parser, main
from stereoforge.cli.console import spec_values
from stereoforge.errors import InputError
from stereoforge.generate import DEFAULT_DEPTH_MODEL, SET_BY_GENERATE, GenerateSpec
from stereoforge.io.images import write_png
from stereoforge.io.video import CODECS
from stereoforge.rig import DEFAULT_INTEROCULAR
from stereoforge.server import job_models
from stereoforge.spec import MODEL_DTYPES, OFFLOAD_MODES, ConvertSpec, flag_of, options

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {f.name: f for f in options()}
#: What the add-on's panel shows for an option whose spec default is None ("worked out from the clip"): the
#: value the backend works out for a clip with metric or relative depth (as the options' help says).
WORKED_OUT = {"interocular": DEFAULT_INTEROCULAR, "convergence_mode": "OFFAXIS", "pivot": "CENTER"}
#: Add-on settings named as an option but the add-on's own: the shot's device defaults to the preferences'.
ADDON_OWN = {"device"}
#: Choices only the add-on has: MODEL fills with Inpainting Model (the spec's inpaint_model).
ADDON_EXTRA_CHOICES = {"inpaint": {"model"}}


def spec_table(skip=(), defaults=None) -> dict:
    return {name: {"default": (defaults or {}).get(name, f.default), "choices": f.metadata["choices"]}
            for name, f in OPTIONS.items() if name not in skip}


def drift(expected: dict, actual: dict, where: str) -> list[str]:
    """Each way an option of ``actual`` differs from the spec's ``expected`` (a key missing from ``actual``'s
    entry is not compared: a comma-list option has no argparse choices)."""
    found = []
    for name, want in expected.items():
        flag = flag_of(OPTIONS[name])
        if name not in actual:
            found.append(f"{where}: {flag} is missing")
            continue
        for key, value in want.items():
            if key in actual[name] and actual[name][key] != value:
                found.append(f"{where}: {flag} {key} is {actual[name][key]!r}, the spec's {value!r}")
    return found


def cli_table(command: str) -> dict:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest: {"default": a.default, **({"choices": tuple(a.choices)} if a.choices else {})}
            for a in sub._actions if a.dest in OPTIONS}


def body_table(model) -> dict:
    return {name: {"default": f.default} for name, f in model.model_fields.items() if name in OPTIONS}


def test_the_command_line_and_the_server_body_take_the_spec_options(tmp_path):
    convert_body, generate_body = job_models(str(tmp_path))
    generate_table = spec_table(skip=SET_BY_GENERATE, defaults={"depth_model": DEFAULT_DEPTH_MODEL})
    assert drift(spec_table(), cli_table("convert"), "convert") == []
    assert drift(generate_table, cli_table("generate"), "generate") == []
    assert drift(spec_table(), body_table(convert_body), "POST /jobs convert") == []
    assert drift(generate_table, body_table(generate_body), "POST /jobs generate") == []
    # ... and nothing more: the body holds exactly the spec's fields (generate: its own and the convert options).
    assert set(convert_body.model_fields) == {"kind", "source", "output_dir", *OPTIONS}
    assert set(generate_body.model_fields) == {"kind", *GenerateSpec.__dataclass_fields__} - {"options"} | (
        set(OPTIONS) - set(SET_BY_GENERATE))


def test_a_drifted_default_or_choice_is_caught():
    table = cli_table("convert")
    table["inpaint_overlap"]["default"] = 0  # the bug of issue 16: the command line said 0, the spec 2
    table["codec"]["choices"] = ("h264",)
    del table["seed"]
    assert drift(spec_table(), table, "convert") == [
        f"convert: --codec choices is ('h264',), the spec's {tuple(CODECS)}",
        "convert: --seed is missing",
        "convert: --inpaint-overlap default is 0, the spec's 2"]


def test_inpaint_overlap_is_the_same_from_the_command_line_and_the_server(tmp_path):
    """Regression (issue 16): --inpaint-overlap defaulted to 0 on the command line and to 2 in the spec the
    server uses, so a shot resumed through the server remade its inpainting."""
    root = tmp_path.resolve()
    paths = {"source": str(root / "clip.mp4"), "output_dir": str(root / "shot"), "depth": str(root / "depth.npy")}
    args = build_parser().parse_args(["convert", paths["source"], "-o", paths["output_dir"], "--depth",
                                      paths["depth"], "--inpaint-model", "models/inpaint"])
    from_cli = ConvertSpec(source=args.source, output_dir=args.output, **spec_values(args))
    convert_body, _ = job_models(str(root))
    body = convert_body(kind="convert", **paths, inpaint_model="models/inpaint")
    from_server = ConvertSpec.from_dict(body.model_dump(exclude={"kind"}))
    assert from_cli.inpaint_overlap == from_server.inpaint_overlap == 2
    assert from_cli.to_dict() == from_server.to_dict()


@pytest.mark.parametrize("alias,dtype", [("fp16", "float16"), ("bf16", "bfloat16"), ("fp32", "float32")])
def test_dtype_aliases_are_taken_by_the_command_line_and_the_server(tmp_path, alias, dtype):
    """Regression: --dtype fp16 (and the server body's model_dtype "fp16") were refused once the choices came
    from the spec; the short names are taken again, as the precision's own name."""
    root = tmp_path.resolve()
    paths = {"source": str(root / "clip.mp4"), "output_dir": str(root / "shot"), "depth": str(root / "depth.npy")}
    args = build_parser().parse_args(["convert", paths["source"], "-o", paths["output_dir"], "--depth",
                                      paths["depth"], "--dtype", alias])
    from_cli = ConvertSpec(source=args.source, output_dir=args.output, **spec_values(args))
    convert_body, _ = job_models(str(root))
    body = convert_body(kind="convert", **paths, model_dtype=alias)
    from_server = ConvertSpec.from_dict(body.model_dump(exclude={"kind"}))
    assert from_cli.model_dtype == from_server.model_dtype == dtype
    with pytest.raises(InputError, match="--dtype 'fp8' is not one of auto, float32"):
        ConvertSpec(source="a", output_dir="b", depth="c", model_dtype="fp8").check()


def test_shot_json_records_every_option(tmp_path, capsys):
    rng = np.random.default_rng(3)
    write_png(str(tmp_path / "frame.png"), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    np.save(tmp_path / "depth.npy", rng.uniform(1, 4, (16, 24)).astype(np.float32))
    shot = tmp_path / "shot"
    assert main(["convert", str(tmp_path / "frame.png"), "--depth", str(tmp_path / "depth.npy"), "-o", str(shot),
                 "--depth-kind", "metric", "--no-cloud", "--crf", "20", "-q"]) == 0
    recorded = json.loads((shot / "shot.json").read_text())["spec"]
    assert set(recorded) == {"source", "output_dir", *OPTIONS}
    spec = ConvertSpec.from_dict(recorded)  # what shot.json holds makes the same spec again
    given = {"depth": str(tmp_path / "depth.npy"), "depth_kind": "metric", "cloud": False, "crf": 20}
    assert drift(spec_table(defaults=given), {name: {"default": getattr(spec, name)} for name in OPTIONS},
                 "shot.json") == []


@pytest.fixture(scope="module")
def addon_table() -> dict:
    """The add-on's settings, read in a Blender session (tests/blender/option_table.py)."""
    pytest.importorskip("bpy")
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "blender" / "option_table.py"), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT: ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT: "):])


def addon_options(defaults: dict, enums: dict) -> dict:
    """The add-on's settings that mirror an option, as the spec would hold them."""
    table = {}
    for name, value in defaults.items():
        spec_name = "layouts" if name == "layout" else name
        f = OPTIONS.get(spec_name)
        if f is None or name in ADDON_OWN:
            continue
        if name == "layout":
            value = [v.lower().replace("_", "-") for v in value]
            table[spec_name] = {"default": tuple(value)}
            continue
        # The add-on's enum items are upper case with '_' where a lower-case option says '-' (H265_10: h265-10).
        lower = lambda item, f=f: item.lower().replace("_", "-") if f.metadata["choices"][0].islower() else item
        if isinstance(value, str) and name in enums:
            value = lower(value) if f.metadata["choices"] else value
        if isinstance(value, float):
            value = float(f"{value:.7g}")  # Blender keeps floats in single precision
        if f.default is None and (value in (0, "", False) or value == WORKED_OUT.get(name)):
            value = None
        entry = {"default": value}
        if name in enums and f.metadata["choices"]:
            items = [lower(i) for i in enums[name]]
            entry["choices"] = tuple(sorted(i for i in items if i not in ADDON_EXTRA_CHOICES.get(name, ())))
        table[spec_name] = entry
    return table


def test_the_addon_sends_spec_fields_and_its_settings_default_as_the_spec(addon_table):
    assert set(addon_table["convert_spec"]) <= {"source", "output_dir", *OPTIONS}
    mirrored = addon_options(addon_table["defaults"], addon_table["enums"])
    expected = {name: {"default": want["default"], "choices": want["choices"] and tuple(sorted(want["choices"]))}
                for name, want in spec_table().items() if name in mirrored}
    assert len(mirrored) >= 25, sorted(mirrored)
    assert drift(expected, mirrored, "add-on") == []
    assert [d.lower() for d in addon_table["dtypes"]] == list(MODEL_DTYPES)
    assert [o.lower() for o in addon_table["offloads"]] == list(OFFLOAD_MODES)


def test_a_drifted_addon_default_is_caught(addon_table):
    defaults = {**addon_table["defaults"], "crf": 20, "inpaint_chunk": 4, "interocular": 0.07}
    mirrored = addon_options(defaults, addon_table["enums"])
    found = drift({name: {"default": spec_table()[name]["default"]} for name in mirrored}, mirrored, "add-on")
    # The interocular's spec default is None (worked out from the clip): the add-on's shows the one it works
    # out, rig.DEFAULT_INTEROCULAR, and any other value is a drift.
    assert addon_table["defaults"]["interocular"] == pytest.approx(DEFAULT_INTEROCULAR)
    assert sorted(found) == ["add-on: --crf default is 20, the spec's 18",
                             "add-on: --inpaint-chunk default is 4, the spec's 8",
                             "add-on: --interocular default is 0.07, the spec's None"]
