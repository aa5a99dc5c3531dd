"""Cohort training under torchrun: 2 CPU processes (gloo) against 1 process, same total batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(cmd: list[str], tmp: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    res = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def test_two_processes_match_one(tmp_path: Path) -> None:
    _run([sys.executable, str(HERE / "_ddp_train.py"), str(tmp_path / "single"), "8"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          str(HERE / "_ddp_train.py"), str(tmp_path / "ddp"), "4"], tmp_path)
    one = json.loads((tmp_path / "single.0.json").read_text())
    r0, r1 = (json.loads((tmp_path / f"ddp.{r}.json").read_text()) for r in (0, 1))
    assert one["world"] == 1 and r0["world"] == r1["world"] == 2
    # each process made the pseudo-labels of its own half of the scans
    assert one["scans_made"] == 4 and r0["scans_made"] == r1["scans_made"] == 2
    # DistributedDataParallel keeps the replicas identical
    assert r0["first_weight"] == r1["first_weight"] and abs(r0["dice"] - r1["dice"]) < 1e-6
    # same total batch and steps: the same quality as one process, within tolerance
    assert one["dice"] > 0.75 and abs(r0["dice"] - one["dice"]) < 0.1, (one, r0)
