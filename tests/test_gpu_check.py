"""bench/gpu_check.sh on a machine without CUDA, and its Python part at tiny sizes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the script would measure it")
def test_script_without_cuda_says_so_and_exits_0(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path / "out")], capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout
    assert json.loads((tmp_path / "out" / "findings.json").read_text())["cuda"] is False


def run_check(out: Path, *parts: str) -> dict:
    # a generous budget: the demo on a shared CPU takes minutes (the GPU run plans for 450 s)
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out), "--device", "cpu", "--tiny",
               "--budget-s", "1500"]
    if parts:
        command += ["--parts", *parts]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "findings.json").read_text())


def test_measuring_parts_run_tiny_on_the_cpu(tmp_path):
    findings = run_check(tmp_path, "cyclegan", "classify")
    assert findings["tiny"] and findings["environment"]["device"] == "cpu"
    cases = findings["cyclegan"]["cases"]
    assert set(cases) == {"32px fp32", "32px bf16", "48px fp32", "48px bf16"}
    assert all(case["seconds_per_step"] > 0 and case["peak_mb"] > 0 for case in cases.values()), cases
    assert set(findings["cyclegan"]["bf16_vs_fp32"]) == {"32px", "48px"}
    assert all(row["images_per_s"] > 0 for row in findings["classify"].values())
    text = (tmp_path / "findings.md").read_text()
    assert "## CycleGAN training step" in text and "## Classify CNN training" in text


@pytest.mark.slow
def test_every_part_runs_tiny_on_the_cpu(tmp_path):
    findings = run_check(tmp_path)
    assert findings["tests"]["skipped"] == len(findings["tests"]["tests"]) > 0  # the cuda tests skip here
    assert findings["demo"]["exit_code"] == 0, findings["demo"]
    assert {"extract", "cyclegan", "augment", "classify"} <= set(findings["demo"]["stages"])
