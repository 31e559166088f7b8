"""bench/gpu.py waits for a lent GPU; this keeps it runnable in between.

`--smoke` runs every code path on the CPU with scaled-down models, including the check that the
one-step function (what the GPU run captures in a CUDA graph) makes the same picture as
diffusers' own pipeline, and writes the JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO.parent / "shared" / "bench" / "sd-turbo"  # the SD-Turbo configs the benchmarks build from


@pytest.mark.skipif(not (CONFIGS / "unet" / "config.json").is_file(), reason=f"no SD-Turbo configs in {CONFIGS}")
def test_gpu_benchmark_smoke_runs_and_reports(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    variants = {row["variant"] for row in report["rows"]}
    assert {"plain diffusers (KL VAE)", "fast (TAESD)", "fast+graph"} <= variants
    assert any(variant.startswith("tiny") for variant in variants)
    assert report["graph_vs_pipeline_psnr_db"] >= 30
    assert all(row["images_per_s"] > 0 for row in report["rows"])
