"""benchmarks/compare_session_gpu.py on a CPU, tiny: both modes run, agree, and are written down."""
from __future__ import annotations

import json

from benchmark_scripts import load_benchmark


def test_concurrent_and_sequential_columns_agree_and_are_reported(tmp_path):
    bench = load_benchmark("compare_session_gpu")
    argv = ["--device", "cpu", "--batch", "4", "--model", "ring", "--steps", "3", "--repeats", "1", "--warmup", "0",
            "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "compare-session-gpu.json").read_text())
    assert [c["solver"] for c in result["columns"]] == list(bench.SOLVERS)
    assert [c["nfe"] for c in result["columns"]] == [3, 5, 3, 3]  # Heun: 2 per step, Euler's last
    assert result["all_final_equal"] and result["max_abs_diff_final"] == 0.0
    assert set(result["median_seconds"]) == {"concurrent", "sequential"} and result["batch"] == 4
    text = (tmp_path / "compare-session-gpu.md").read_text()
    assert "| concurrent |" in text and "equal in every column" in text
