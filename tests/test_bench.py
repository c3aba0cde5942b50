"""``stereoforge bench``: it runs at a tiny size and ends with one line of JSON holding its figures.

No timing thresholds here: speed targets belong to the benchmark's output, not to tests on a shared machine.
"""

from __future__ import annotations

import json
import numbers

from stereoforge import pipeline
from stereoforge.cli import main
from stereoforge.inpaint import DEFAULT_INPAINTER


def last_json_line(capsys) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])


def positive(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0


def test_bench_splat_reports_ms_per_frame(capsys):
    assert main(["bench", "splat", "--height", "48", "--width", "64", "--frames", "4", "--repeat", "1",
                 "--device", "cpu", "--json"]) == 0
    figures = last_json_line(capsys)
    assert figures["height"] == 48 and figures["width"] == 64 and figures["device"] == "cpu"
    assert positive(figures["ms_per_frame"])
    assert positive(figures["numpy_ms_per_frame"]) and positive(figures["speedup"])


def test_bench_chunk_reads_the_last_frames_both_ways(capsys):
    assert main(["bench", "chunk", "--height", "24", "--width", "32", "--frames", "12", "--last", "3",
                 "--repeat", "1", "--json"]) == 0
    figures = last_json_line(capsys)
    assert (figures["frames"], figures["last"]) == (12, 3)
    assert positive(figures["from_start_cpu_s"]) and positive(figures["from_chunk_cpu_s"])


def test_bench_splat_times_toe_without_the_yardstick(capsys):
    assert main(["bench", "splat", "--height", "24", "--width", "32", "--frames", "2", "--repeat", "1",
                 "--device", "cpu", "--convergence-mode", "TOE", "--no-reference", "--json"]) == 0
    figures = last_json_line(capsys)
    assert positive(figures["ms_per_frame"]) and "numpy_ms_per_frame" not in figures


def test_bench_pipeline_reports_stages_and_memory(capsys, tmp_path):
    assert main(["bench", "pipeline", "--height", "32", "--width", "48", "--frames", "3", "--device", "cpu",
                 "--workdir", str(tmp_path), "--json"]) == 0
    figures = last_json_line(capsys)
    assert figures["frames"] == 3 and figures["height"] == 32 and figures["width"] == 48
    stages = figures["seconds_per_frame"]
    assert {"ingest", "cloud", "eyes+inpaint+composite", "encode"} <= stages.keys()  # the middle three as one
    assert all(positive(seconds) for seconds in stages.values())
    for key in ("total_seconds_per_frame", "cpu_seconds_per_frame", "peak_rss_mb", "rss_before_mb",
                "peak_rss_during_convert_mb"):
        assert positive(figures[key]), key
    assert all(positive(peak) for peak in figures["peak_rss_mb_by_stage"].values())
    assert list(tmp_path.iterdir()) == []  # the clip and the shot are cleaned up


def test_bench_pipeline_converts_with_the_inpainter_asked_for(capsys, tmp_path, monkeypatch):
    asked = []
    convert = pipeline.convert

    def spy(spec, **kwargs):
        asked.append(spec.inpaint)
        return convert(spec, **kwargs)

    monkeypatch.setattr(pipeline, "convert", spy)
    size = ["--height", "16", "--width", "24", "--frames", "2", "--device", "cpu", "--no-cloud",
            "--workdir", str(tmp_path), "--json"]
    assert main(["bench", "pipeline", *size]) == 0
    assert last_json_line(capsys)["inpaint"] == DEFAULT_INPAINTER
    other = "none" if DEFAULT_INPAINTER != "none" else "telea"
    assert main(["bench", "pipeline", *size, "--inpaint", other]) == 0
    assert last_json_line(capsys)["inpaint"] == other
    assert asked == [DEFAULT_INPAINTER, other]


def test_bench_farm_prints_each_run_the_speed_up_and_that_the_files_agree(capsys):
    """``bench farm``: one process (eyes, inpaint and composite as one step) and Ray clusters of 1 and 2 workers
    (eyes and inpaint as one step, a task per eye; composite on its own) in one table; the shots hold the same
    bytes."""
    assert main(["bench", "farm", "--height", "36", "--width", "64", "--frames", "6", "--workers", "1,2",
                 "--repeat", "2", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads(lines[-1])
    assert report["identical"] is True and report["files"] > 6
    assert list(report["runs"]) == ["one process", "Ray, 1 worker", "Ray, 2 workers"]
    assert all(run["seconds"] == min(run["all_seconds"]) and len(run["all_seconds"]) == 2
               for run in report["runs"].values())  # the best of --repeat 2
    assert "eyes+inpaint+composite" in report["runs"]["one process"]["timings"]
    assert {"eyes+inpaint", "composite"} <= set(report["runs"]["Ray, 2 workers"]["timings"])
    table = "\n".join(lines[:-1])
    assert "speed-up 2/1" in table and "files identical: yes" in table
    # The schedule of the 2-worker run: every task on one of its two workers, none before the submission.
    tasks = [task for group in report["runs"]["Ray, 2 workers"]["tasks"].values() for task in group]
    assert len({task["worker"] for task in tasks}) <= 2
    assert all(0 <= task["start"] <= task["end"] and task["cpu"] > 0 for task in tasks)
    assert "schedule of the 2-worker run" in table and "worker 1: " in table
    assert "speed-up 2/1 by round: " in table
