"""`oxilink analyze` / `oxilink calibrate` and the bench's scoring, on synthetic and a few real recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oxilink import bench_dsp, cmd_analyze, ppgdata, synth

OXILINK = [sys.executable, "-m", "oxilink.cli"]


def _pulse(fs: int, seconds: float, bpm: float) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    ph = (t * bpm / 60) % 1.0
    return np.exp(-(((ph - 0.2) / np.where(ph < 0.2, 0.09, 0.2)) ** 2))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OXILINK, *args], capture_output=True, text=True, timeout=300)


def test_analyze_cli_prints_one_json_object_per_second(tmp_path: Path, mpbuild):
    p = _pulse(100, 30, 72)
    csv = tmp_path / "rec.csv"
    csv.write_text("Red,IR\n" + "".join(f"{int(80000 - 200 * v)},{int(100000 - 400 * v)}\n" for v in p))
    proc = _cli("analyze", str(csv), "--fs", "100")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 30
    assert set(rows[0]) == {"t", "hr_bpm", "spo2_pct", "pi_pct", "quality", "reasons", "gate"}
    assert rows[0]["hr_bpm"] is None and "warming_up" in rows[0]["reasons"]
    last = rows[-1]
    assert abs(last["hr_bpm"] - 72) <= 1.0 and last["quality"] == 0 and last["reasons"] == []
    assert abs(last["spo2_pct"] - (110 - 25 * (200 / 80000) / (400 / 100000))) <= 1.0
    assert last["pi_pct"] == pytest.approx(0.4, abs=0.08)


def test_analyze_ir_only_gives_hr_without_spo2(tmp_path: Path, mpbuild):
    csv = tmp_path / "ir.csv"
    csv.write_text("ir\n" + "".join(f"{int(100000 - 400 * v)}\n" for v in _pulse(50, 25, 110)))
    proc = _cli("analyze", str(csv), "--fs", "50")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert abs(rows[-1]["hr_bpm"] - 110) <= 1.0
    assert all(r["spo2_pct"] is None for r in rows)


def test_analyze_rejects_bad_input(tmp_path: Path):
    csv = tmp_path / "bad.csv"
    csv.write_text("red,green\n1,2\n")
    proc = _cli("analyze", str(csv), "--fs", "100")
    assert proc.returncode == 2 and "no 'ir' column" in proc.stderr
    proc = _cli("analyze", str(csv), "--fs", "1000")
    assert proc.returncode == 2 and "25..400" in proc.stderr


def test_scoring_uses_the_nearest_reference_within_two_seconds():
    ref = ppgdata.Series(np.array([0.0, 1.0, 2.0, 10.0]), np.array([60.0, 61.0, 62.0, 70.0]))
    t = np.array([1.0, 2.0, 3.0, 6.0, 9.0])
    v = np.array([63.0, np.nan, 60.0, 99.0, 71.0])
    s = bench_dsp.score(t, v, ref)
    assert s.with_ref == 4  # t=6 has no reference within 2 s
    assert s.errors == [2.0, -2.0, 1.0]


@pytest.mark.parametrize("rec_id", ["05", "22"])
def test_bidmc_heart_rate(data_dir: Path, rec_id: str, mpbuild):
    rec = ppgdata.bidmc(rec_id, data_dir)
    res = cmd_analyze.run_arrays(rec.ir, None, 125)
    s = bench_dsp.score(*res.series("hr_bpm"), rec.ref_hr).summary(5)
    assert s["mae"] <= 1.2 and s["coverage_pct"] >= 90 and s["within_pct"] >= 97, s


def test_uw_phone_heart_rate(data_dir: Path, mpbuild):
    rec = ppgdata.uw("Right", "100002", data_dir)
    res = cmd_analyze.run_arrays(rec.ir[: 30 * 300], None, 30)
    s = bench_dsp.score(*res.series("hr_bpm"), rec.ref_hr).summary(5)
    assert s["mae"] <= 1.6 and s["coverage_pct"] >= 90, s


def test_camera_channel_falls_back_to_green_only_when_red_is_clipped():
    rows = [[str(t), str(r), str(g), "1"] for t, r, g in zip(range(0, 297, 33), [255.0] * 6 + [250.0] * 3,
                                                              range(60, 69), strict=True)]
    assert list(ppgdata.camera_channel(["time", "R", "G", "B"], rows)) == list(range(60, 69))  # green
    rows = [[str(t), str(r), "60", "1"] for t, r in zip(range(0, 297, 33), [255.0] * 4 + [250.0] * 5, strict=True)]
    assert list(ppgdata.camera_channel(["time", "R", "G", "B"], rows)) == [255.0] * 4 + [250.0] * 5  # red


def test_welltory_heart_rate_on_a_clipped_red_recording(data_dir: Path, mpbuild):
    rec = ppgdata.welltory("20", data_dir)  # red reads 255 in every frame: the loader takes green
    res = cmd_analyze.run_arrays(rec.ir, None, 30)
    s = bench_dsp.score(*res.series("hr_bpm"), rec.ref_hr).summary(5)
    assert s["mae"] <= 3 and s["coverage_pct"] >= 80, s


def test_synthetic_spo2_is_recovered(data_dir: Path, mpbuild):
    rec = synth.synthetic_recording("09", seed=9, seconds=240)
    res = cmd_analyze.run_arrays(rec.ir, rec.red, 125)
    s = bench_dsp.score(*res.series("spo2_pct"), rec.ref_spo2).summary()
    assert s["mae"] <= 1.0 and s["coverage_pct"] >= 85, s


def test_calibrate_fits_the_curve_and_writes_the_board(data_dir: Path, tmp_path: Path, repo: Path, mpbuild):
    curve = (104.0, -17.0, 0.0)
    files = []
    for k, rid in enumerate(("03", "11", "30")):
        rec = synth.synthetic_recording(rid, seed=k, curve=curve, seconds=150)
        rng = np.random.default_rng(k)
        spo2 = np.interp(np.arange(len(rec.ir)) / rec.fs, rec.ref_spo2.t, rec.ref_spo2.v)
        f = tmp_path / f"cal{rid}.csv"
        with f.open("w") as out:
            out.write("red,ir,SpO2\n")
            for r, i, s in zip(rec.red, rec.ir, spo2, strict=True):
                out.write(f"{int(r)},{int(i)},{'' if rng.random() < 0.01 else round(s, 1)}\n")
        files.append(str(f))
    board = tmp_path / "board.json"
    board.write_text((repo / "boards" / "sim.json").read_text())
    proc = _cli("calibrate", *files, "--fs", "125", "--board", str(board), "--degree", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout[proc.stdout.index("{"): proc.stdout.rindex("}") + 1])
    c0, c1, _ = report["spo2_curve"]
    assert abs(c0 - curve[0]) <= 2.0 and abs(c1 - curve[1]) <= 2.0, report
    assert report["leave_one_out_mae"] <= 1.0 and len(report["leave_one_out"]) == 3
    written = json.loads(board.read_text())["vitals"]["spo2_curve"]
    assert written == report["spo2_curve"]
