"""Outputs are checked before the compute, reserved, and committed together or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.annotations.files import save_annotation
from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.cli import main
from napari_sparseseg.errors import OutputError
from napari_sparseseg.io import Volume, write_volume_nifti, write_zarr
from napari_sparseseg.io.atomic import atomic_path, leftover_temporaries, remove_stale_temporaries
from napari_sparseseg.io.outputs import OutputSet, lock_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def case(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    img = Volume(rng.normal(size=(4, 24, 24)).astype(np.float32), np.eye(4), name="img")
    write_volume_nifti(tmp_path / "img.nii.gz", img)
    a = np.zeros(img.shape, np.int16)
    a[1, 3:5, 3:20], a[1, 18:20, 3:20] = 1, 2
    save_annotation(tmp_path / "ann.nii.gz", SparseAnnotation(a, 2), img)
    return {"tmp": tmp_path, "img": tmp_path / "img.nii.gz", "ann": tmp_path / "ann.nii.gz"}


def _pseudo(case, out, conf, *extra: str) -> list[str]:
    return ["pseudo", str(case["img"]), "--annotations", str(case["ann"]), "-o", str(out), "--confidence", str(conf),
            "--method", "random-walker-ignore", *extra]


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("out_name, expect", [
    ("missing/p.nii.gz", "does not exist"),
    ("p.png", "must end in"),
    ("img.nii.gz", "input of this run"),
])
def test_bad_outputs_fail_before_any_compute(case, capsys, monkeypatch, out_name, expect) -> None:
    import napari_sparseseg.pseudo as pseudo_mod

    def boom(*a, **k):  # the compute must not even start
        raise AssertionError("compute started before the outputs were checked")

    monkeypatch.setattr(pseudo_mod, "make_pseudo_labels", boom)
    rc = main(_pseudo(case, case["tmp"] / out_name, case["tmp"] / "c.nii.gz"))
    assert rc == 2 and expect in _one_line(capsys.readouterr().err)
    assert not (case["tmp"] / "c.nii.gz").exists()


def test_second_run_on_the_same_output_fails_while_the_first_holds_it(case, capsys) -> None:
    out = case["tmp"] / "p.nii.gz"
    first = OutputSet(False)
    first.add(out)
    code = f"import os, time; from pathlib import Path; p = Path({str(lock_path(out))!r}); p.write_text(str(os.getpid())); time.sleep(60)"
    other = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(100):
            if lock_path(out).exists() and lock_path(out).read_text().strip() == str(other.pid):
                break
            import time

            time.sleep(0.05)
        rc = main(_pseudo(case, out, case["tmp"] / "c.nii.gz"))
        assert rc == 2 and "being written by another run" in _one_line(capsys.readouterr().err)
    finally:
        other.kill()
        other.wait()
    # the other writer died: its reservation is stale and is taken over
    rc = main(_pseudo(case, out, case["tmp"] / "c.nii.gz"))
    assert rc == 0 and out.exists() and not lock_path(out).exists()
    assert leftover_temporaries(case["tmp"]) == []


def test_outputs_commit_together_or_not_at_all(case, monkeypatch) -> None:
    a, b = case["tmp"] / "a.nii.gz", case["tmp"] / "b.nii.gz"
    a.write_bytes(b"old a")
    with OutputSet(overwrite=True) as outs:
        outs.add(a)
        outs.add(b)
        outs.reserve()
        outs.stage(a).write_bytes(b"new a")
        outs.stage(b).write_bytes(b"new b")
        real_link = os.link

        def failing_link(src, dst, *args, **kw):  # the second rename fails (e.g. the disk went away)
            if str(dst) == str(b):
                raise OSError(28, "No space left on device", str(b))
            return real_link(src, dst, *args, **kw)

        monkeypatch.setattr(os, "link", failing_link)
        with pytest.raises(OSError):
            outs.commit()
    assert a.read_bytes() == b"old a" and not b.exists()  # a rolled back, b never appeared
    assert leftover_temporaries(case["tmp"]) == []


def test_zarr_replace_has_no_moment_without_destination(tmp_path, monkeypatch) -> None:
    like = Volume(np.zeros((2, 3, 4), np.float32), np.eye(4))
    dest = tmp_path / "x.zarr"
    write_zarr(dest, np.ones((2, 3, 4), np.uint8), like)
    seen_missing = []
    real_rename, real_replace = os.rename, os.replace

    def watch(fn):
        def inner(src, dst, *a, **k):
            r = fn(src, dst, *a, **k)
            seen_missing.append(not dest.exists())
            return r
        return inner

    monkeypatch.setattr(os, "rename", watch(real_rename))
    monkeypatch.setattr(os, "replace", watch(real_replace))
    write_zarr(dest, np.full((2, 3, 4), 2, np.uint8), like)
    assert not any(seen_missing)
    import zarr

    assert int(np.asarray(zarr.open(str(dest), mode="r")["0"])[0, 0, 0]) == 2
    assert leftover_temporaries(tmp_path) == []


def test_checkpoint_temporaries_use_the_one_naming_scheme_and_are_cleaned_after_a_kill(tmp_path) -> None:
    code = ("import os, torch; from napari_sparseseg.io.atomic import atomic_path\n"
            f"with atomic_path({str(tmp_path / 'm.safetensors')!r}) as t:\n"
            "    open(t, 'wb').write(b'partial'); os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    left = leftover_temporaries(tmp_path)
    assert len(left) == 1 and not (tmp_path / "m.safetensors").exists()
    assert remove_stale_temporaries(tmp_path) == left and leftover_temporaries(tmp_path) == []
    # a live writer's temporary is left alone
    with atomic_path(tmp_path / "n.nii.gz") as t:
        t.write_bytes(b"x")
        assert remove_stale_temporaries(tmp_path) == []
    import inspect

    from napari_sparseseg.training.checkpoint import save_checkpoint

    assert "atomic_path" in inspect.getsource(save_checkpoint)


def test_read_only_folder_fails_before_compute(case, capsys, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M,ro", "tmpfs", str(ro)], capture_output=True).returncode:
            pytest.skip("root without mount: chmod cannot make a folder read-only for root")
    else:
        ro.chmod(0o555)
    try:
        rc = main(_pseudo(case, ro / "p.nii.gz", case["tmp"] / "c.nii.gz"))
        line = _one_line(capsys.readouterr().err)
        assert rc == 2 and "cannot write in" in line, line
        assert not (case["tmp"] / "c.nii.gz").exists()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=False)
        else:
            ro.chmod(0o755)


def test_existing_output_is_exclusive_without_overwrite(case, capsys) -> None:
    out = case["tmp"] / "p.nii.gz"
    out.write_bytes(b"keep me")
    rc = main(_pseudo(case, out, case["tmp"] / "c.nii.gz"))
    assert rc == 2 and "--overwrite" in _one_line(capsys.readouterr().err) and out.read_bytes() == b"keep me"
    with pytest.raises(OutputError, match="also -o"):
        _dup(out)


def _dup(out: Path) -> None:
    s = OutputSet(overwrite=True)
    s.add(out, flag="-o")
    s.add(out, flag="--confidence")
    s.reserve()
