"""Fault injection on a real small run: SIGINT / SIGTERM / SIGKILL at each stage, a full disk.

Each case asserts: the exit code (130 on Ctrl+C, 143 on SIGTERM, 2 on a full disk), one line about
it and no traceback on stderr, no output file (partial or complete) at any destination, and no
temporary left once the next run has written beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.annotations.files import save_annotation
from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.cli import main
from napari_sparseseg.io import Volume, write_volume_nifti
from napari_sparseseg.io.atomic import leftover_temporaries

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:6, :64, :64]
    img = ((x - 32) ** 2 + (y - 32) ** 2 < 14 ** 2).astype(np.float32) * 100 + rng.normal(0, 5, (6, 64, 64))
    vol = Volume(img.astype(np.float32), np.diag([1.5, 1.0, 1.0, 1.0]))
    write_volume_nifti(tmp / "img.nii.gz", vol)
    a = np.zeros(vol.shape, np.int16)
    a[:, 30:34, 26:38] = 1  # every slice marked: the pseudo-label stage takes a moment
    a[:, 3:5, 3:60] = 2
    save_annotation(tmp / "ann.nii.gz", SparseAnnotation(a, 2), vol)
    return {"img": tmp / "img.nii.gz", "ann": tmp / "ann.nii.gz"}


#: the CLI's own entry point, saying "ready" once Python has started (an interrupt during the
#: interpreter's start-up, before any of our code runs, is Python's business, not ours)
LAUNCH = ("import sys; from napari_sparseseg.cli import main; print('ready', file=sys.stderr, flush=True); "
          "sys.exit(main())")


def _segment_argv(case, out: Path) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "segment", str(case["img"]), "-a", str(case["ann"]),
            "-o", str(out / "pred.nii.gz"), "--uncertainty", str(out / "unc.nii.gz"),
            "--save-model", str(out / "m.safetensors"), "--budget-seconds", "60", "--threads", "1",
            "--pseudo-method", "random-walker-nearest"]


def _assert_nothing_written(out: Path) -> None:
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == [], names
    visible_partials = [p for p in out.iterdir() if p.name.startswith(".") and "sparseseg" not in p.name]
    assert visible_partials == []


def _clean_run_removes_leftovers(case, out: Path) -> None:
    rc = main(["pseudo", str(case["img"]), "--annotations", str(case["ann"]), "-o", str(out / "p.nii.gz"),
               "--confidence", str(out / "c.nii.gz"), "--method", "random-walker-ignore"])
    assert rc == 0
    assert leftover_temporaries(out) == [] and not [p for p in out.iterdir() if p.name.endswith("-lock")]


def _run_until(argv: list[str], marker: str | None, delay: float = 0.0) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=ENV, text=True, bufsize=1)
    if marker is not None:
        seen = []
        for line in proc.stderr:  # the command's own progress lines
            seen.append(line)
            if marker in line:
                break
        else:
            pytest.fail(f"the run ended before {marker!r}: {''.join(seen)}")
    time.sleep(delay)
    return proc


@pytest.mark.parametrize("stage, marker, delay, sig, code", [
    ("start", "ready", 0.1, signal.SIGINT, 130),                    # loading the command, reading
    ("pseudo-labels", "pseudo-labels (", 0.05, signal.SIGINT, 130),  # inside the random walker
    ("training", "training unet", 1.0, signal.SIGINT, 130),         # inside the training loop
    ("training", "training unet", 1.0, signal.SIGTERM, 143),        # SIGTERM takes the same path
])
def test_interrupt_at_each_stage_leaves_nothing(case, tmp_path, stage, marker, delay, sig, code) -> None:
    proc = _run_until(_segment_argv(case, tmp_path), marker, delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert last.endswith(("interrupted", "terminated")), err
    _assert_nothing_written(tmp_path)
    assert leftover_temporaries(tmp_path) == []
    _clean_run_removes_leftovers(case, tmp_path)


def test_sigkill_during_training_leaves_no_output_and_the_next_run_cleans_up(case, tmp_path) -> None:
    proc = _run_until(_segment_argv(case, tmp_path), "training unet", 1.0)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _assert_nothing_written(tmp_path)
    _clean_run_removes_leftovers(case, tmp_path)


def test_sigkill_while_writing_leaves_no_output(case, tmp_path) -> None:
    # killed after the first output is staged, before the second one is: nothing may be committed
    code = (
        "import os, signal, sys\n"
        "import napari_sparseseg.io as io\n"
        "real = io.write_volume_nifti\n"
        "def dying(path, vol):\n"
        "    real(path, vol)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "io.write_volume_nifti = dying\n"
        "from napari_sparseseg.cli import main\n"
        f"sys.exit(main(['pseudo', {str(case['img'])!r}, '--annotations', {str(case['ann'])!r}, '-o', "
        f"{str(tmp_path / 'p.nii.gz')!r}, '--confidence', {str(tmp_path / 'c.nii.gz')!r}, '--method', "
        "'random-walker-ignore']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "p.nii.gz").exists() and not (tmp_path / "c.nii.gz").exists()
    assert leftover_temporaries(tmp_path)  # the staged file is there, under a temporary name
    _clean_run_removes_leftovers(case, tmp_path)


def test_ctrl_c_while_writing_commits_nothing(case, tmp_path, monkeypatch, capsys) -> None:
    import napari_sparseseg.io as io

    real = io.write_volume_nifti

    def interrupted(path, vol):
        real(path, vol)
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "write_volume_nifti", interrupted)
    rc = main(["pseudo", str(case["img"]), "--annotations", str(case["ann"]), "-o", str(tmp_path / "p.nii.gz"),
               "--confidence", str(tmp_path / "c.nii.gz"), "--method", "random-walker-ignore"])
    err = capsys.readouterr().err
    assert rc == 130 and err.strip() == "sparseseg pseudo: interrupted"
    assert list(tmp_path.iterdir()) == []  # no output, no temporary, no reservation


def test_full_disk_is_one_line_and_leaves_nothing(case, tmp_path, capsys) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(disk)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and tmpfs to simulate a full disk")
    try:
        rc = main(["pseudo", str(case["img"]), "--annotations", str(case["ann"]), "-o", str(disk / "p.nii.gz"),
                   "--confidence", str(disk / "c.nii.gz"), "--method", "random-walker-nearest"])
        err = capsys.readouterr().err
        assert rc == 2 and "No space left" in err and len(err.strip().splitlines()) == 1, err
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)
