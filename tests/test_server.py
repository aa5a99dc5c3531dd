"""A real ``sparseseg serve`` on 127.0.0.1 in a subprocess, driven over HTTP: the same result as a local
run, tokens, upload limits, isolated sessions, the training controls, and a server that dies mid-run."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from _server_process import REPO, TOKEN, server_env, start_server, stop_server  # noqa: E402

from napari_sparseseg.cli import main  # noqa: E402

IMG = REPO / "napari_sparseseg" / "sample_data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
GT = REPO / "napari_sparseseg" / "sample_data" / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz"
MAX_UPLOAD_MB = 1  # the hippocampus case is ~0.1 MB as npz
MAX_VOXELS = 100_000  # the hippocampus case has 62,475


@pytest.fixture(scope="module")
def hippo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from napari_sparseseg.annotations.files import save_annotation
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume

    vol = read_volume(IMG)
    dense = np.asarray(read_labels(GT, like=vol).array)
    tmp = tmp_path_factory.mktemp("srv")
    ann = simulate_slices(dense, 3, axis=0, background_label=3, seed=0)
    ann_path, _ = save_annotation(tmp / "ann.nii.gz", ann, vol)
    return {"vol": vol, "dense": dense, "ann": ann, "ann_path": ann_path, "tmp": tmp}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("serve") / "sessions"
    proc, url = start_server(work, "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-voxels", str(MAX_VOXELS))
    yield {"url": url, "work": work, "proc": proc}
    stop_server(proc)


def _http(url: str, token: str | None = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=120)


def _sessions(server: dict) -> int:
    with _http(server["url"]) as c:
        return c.get("/health").json()["sessions"]


def test_segment_on_the_server_matches_the_local_run(server: dict, hippo: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_sparseseg.evaluate import dice_per_class
    from napari_sparseseg.io import read_labels, read_volume
    from napari_sparseseg.training import load_checkpoint

    monkeypatch.setenv("SPARSESEG_TOKEN", TOKEN)
    tmp = hippo["tmp"]
    common = [str(IMG), "--annotations", str(hippo["ann_path"]), "--pseudo-method", "random-walker", "--max-steps", "25",
              "--budget-seconds", "900", "--seed", "3", "--quiet"]
    assert main(["segment", *common, "-o", str(tmp / "local.nii.gz")]) == 0
    assert main(["segment", *common, "-o", str(tmp / "remote.nii.gz"), "--uncertainty", str(tmp / "unc.nii.gz"),
                 "--save-model", str(tmp / "remote.safetensors"), "--server", server["url"]]) == 0
    vol = hippo["vol"]
    gt = hippo["dense"]
    local = np.asarray(read_labels(tmp / "local.nii.gz", like=vol).array)
    remote = read_labels(tmp / "remote.nii.gz", like=vol)  # on the image grid, or this raises
    assert np.allclose(remote.affine, vol.affine)
    d_local, d_remote = dice_per_class(local, gt, (1, 2)), dice_per_class(np.asarray(remote.array), gt, (1, 2))
    assert min(d_remote.values()) > 0.5, d_remote  # a real segmentation, not chance (~0.05)
    for c in (1, 2):
        assert abs(d_local[c] - d_remote[c]) <= 0.02, (d_local, d_remote)
    unc = np.asarray(read_volume(tmp / "unc.nii.gz").array)
    assert unc.shape == vol.shape and 0 <= unc.min() <= unc.max() <= 1
    _, meta = load_checkpoint(tmp / "remote.safetensors")
    assert meta["classes"] == [1, 2] and meta["steps"] == 25
    assert _sessions(server) == 0 and not any(server["work"].iterdir())  # the session and its files are gone


def test_requests_without_or_with_a_wrong_token_are_refused_and_change_nothing(server: dict, hippo: dict) -> None:
    from napari_sparseseg.server import wire

    with _http(server["url"]) as good:
        sid = good.post("/sessions").json()["id"]
        try:
            before = _sessions(server)
            payload = wire.volume_to_npz(hippo["vol"])
            for token, code in ((None, 401), ("wrong-token-0123456789abcdef", 403)):
                with _http(server["url"], token) as bad:
                    assert bad.get("/health").status_code == code
                    assert bad.post("/sessions").status_code == code
                    assert bad.put(f"/sessions/{sid}/image", content=payload).status_code == code
                    assert bad.post(f"/sessions/{sid}/train", json={}).status_code == code
                    assert bad.delete(f"/sessions/{sid}").status_code == code
            assert _sessions(server) == before
            assert good.get(f"/sessions/{sid}").json()["state"] == "empty"  # the image never arrived
        finally:
            good.delete(f"/sessions/{sid}")


def test_oversized_uploads_are_refused(server: dict) -> None:
    from napari_sparseseg.server import wire

    with _http(server["url"]) as c:
        sid = c.post("/sessions").json()["id"]
        try:
            junk = np.random.default_rng(0).bytes(int(MAX_UPLOAD_MB * 2**20) + 1000)
            r = c.put(f"/sessions/{sid}/image", content=junk)
            assert r.status_code == 413 and "limit" in r.json()["detail"]
            # small on the wire, too many voxels once expanded
            bomb = wire.to_npz({"array": np.zeros((64, 64, 64), np.float32), "affine": np.eye(4)})
            assert len(bomb) < MAX_UPLOAD_MB * 2**20
            r = c.put(f"/sessions/{sid}/image", content=bomb)
            assert r.status_code == 413, r.text
            assert c.get(f"/sessions/{sid}").json()["state"] == "empty"
        finally:
            c.delete(f"/sessions/{sid}")


def test_two_sessions_do_not_see_each_others_data(server: dict, hippo: dict) -> None:
    from napari_sparseseg.annotations.sparse import SparseAnnotation
    from napari_sparseseg.server.client import ServerClient, ServerError

    vol, ann = hippo["vol"], hippo["ann"]
    crop = vol.with_array(vol.array.copy())
    crop.array = np.ascontiguousarray(vol.array[:, :40])
    crop_ann = SparseAnnotation(ann.labels[:, :40].copy(), ann.background_label, ann.classes)
    with ServerClient(server["url"], TOKEN) as client:
        a, b = client.open_session(), client.open_session()
        try:
            assert a.id != b.id
            a.upload_image(vol)
            a.upload_marks(ann)
            b.upload_image(crop)
            with pytest.raises(ServerError, match="upload the image and the marks first"):
                b.pseudo("random-walker")  # a's marks are not b's
            b.upload_marks(crop_ann)
            a.pseudo("random-walker")
            b.pseudo("random-walker")
            opts = {"max_steps": 3, "budget_seconds": 300, "threads": 1}
            a.train(**opts)
            b.train(**opts)  # both train at once
            ev_a, ev_b = list(a.events())[-1], list(b.events())[-1]
            assert ev_a.state == ev_b.state == "done"
            la, _ = a.result()
            lb, _ = b.result()
            assert la.shape == vol.shape and lb.shape == crop.shape
            a.close()
            assert b.state()["state"] == "done"  # ending a leaves b alone
            with pytest.raises(ServerError, match="no such session"):
                client.session(a.id)
        finally:
            a.close()
            b.close()


def test_pause_resume_new_marks_and_continue(server: dict, hippo: dict) -> None:
    """The loop from the widget's side: training streams predictions, pauses, takes corrected marks
    while it runs (warm start), stops, and continues from the same weights."""
    from napari_sparseseg.server.client import ServerClient

    vol, ann = hippo["vol"], hippo["ann"]
    with ServerClient(server["url"], TOKEN) as client:
        s = client.open_session()
        try:
            s.upload_image(vol)
            s.upload_marks(ann)
            s.pseudo("random-walker")
            s.train(budget_seconds=600, max_steps=100000, first_preview_seconds=0.0, preview_every_seconds=1.0,
                    threads=1)
            n_pred, stopped = 0, None
            for ev in s.events():
                if ev.kind == "prediction" and ev.prediction is not None:
                    n_pred += 1
                    assert ev.prediction.shape == vol.shape and ev.changed is not None or n_pred > 1
                    if n_pred == 1:
                        assert s.pause()["state"] == "paused"
                        time.sleep(1.0)  # a step already under way finishes
                        step = s.state()["step"]
                        time.sleep(1.0)
                        assert s.state()["step"] == step  # paused means no steps
                        s.resume()
                        more = ann.copy()
                        more.labels[20][more.labels[20] == 0] = ann.background_label  # "rest of slice 20 is background"
                        assert s.upload_marks(more)["warm"] is True
                    elif n_pred == 2:
                        s.stop()
                if ev.state in ("done", "cancelled", "error"):
                    stopped = ev
            assert stopped is not None and stopped.state == "cancelled", stopped
            first_steps = stopped.step
            assert s.train()["warm"] is True  # continue from the current weights
            time.sleep(1.5)
            s.stop()
            final = list(s.events())[-1]
            assert final.state == "cancelled" and final.step > first_steps
        finally:
            s.close()


def test_server_killed_mid_training_gives_one_clear_error_and_leaves_files_intact(hippo: dict, tmp_path: Path) -> None:
    proc, url = start_server(tmp_path / "sessions")
    out = tmp_path / "pred.nii.gz"
    out.write_bytes(b"the previous result")
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (IMG, hippo["ann_path"], out)}
    env = server_env()
    cli = subprocess.Popen([sys.executable, "-m", "napari_sparseseg.cli", "segment", str(IMG), "-a", str(hippo["ann_path"]),
                            "-o", str(out), "--overwrite", "--pseudo-method", "random-walker", "--budget-seconds", "600",
                            "--server", url], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert cli.stderr is not None
        seen = ""
        while "training on" not in seen:
            line = cli.stderr.readline()
            assert line, f"the client ended before training: {seen}"
            seen += line
        time.sleep(2.0)
        proc.kill()
        proc.wait(10)
        rc = cli.wait(60)
        err = cli.stderr.read()
    finally:
        if cli.poll() is None:
            cli.kill()
        stop_server(proc)
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert rc == 2, err
    assert last.startswith("sparseseg segment: error: lost connection to the server"), err
    assert "Traceback" not in err
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digest} == digest
    assert not [p for p in tmp_path.iterdir() if ".sparseseg-tmp-" in p.name]


def test_nifti_uploads_are_accepted_and_checked(server: dict, hippo: dict) -> None:
    """A scan and marks as NIfTI files (the clinical format) instead of npz; marks off the grid are refused."""
    with _http(server["url"]) as c:
        sid = c.post("/sessions").json()["id"]
        try:
            r = c.put(f"/sessions/{sid}/image", content=IMG.read_bytes())
            assert r.status_code == 200 and r.json()["shape"] == list(hippo["vol"].shape), r.text
            r = c.put(f"/sessions/{sid}/marks", content=hippo["ann_path"].read_bytes())
            assert r.status_code == 400 and "background_label" in r.json()["detail"]
            r = c.put(f"/sessions/{sid}/marks", params={"background_label": 3}, content=hippo["ann_path"].read_bytes())
            assert r.status_code == 200 and r.json()["classes"] == [1, 2], r.text
            r = c.put(f"/sessions/{sid}/marks", content=b"PK\x03\x04 not really a zip")
            assert r.status_code == 400 and "npz" in r.json()["detail"]
            assert c.get(f"/sessions/{sid}").json()["state"] == "ready"
        finally:
            c.delete(f"/sessions/{sid}")


def test_cohort_training_of_a_study_through_the_server(server: dict, hippo: dict, tmp_path: Path) -> None:
    """The study mode on the server: scans (marked or not) in, one cohort network trained across the
    marked ones, streamed status, and a model that segments a scan here."""
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.cohort import CohortModel
    from napari_sparseseg.server.client import ServerClient
    from napari_sparseseg.training import load_checkpoint

    vol, ann = hippo["vol"], hippo["ann"]
    mirrored = vol.with_array(np.ascontiguousarray(vol.array[:, :, ::-1]))
    mirrored_ann = simulate_slices(np.ascontiguousarray(hippo["dense"][:, :, ::-1]), 3, axis=0, background_label=3, seed=1)
    with ServerClient(server["url"], TOKEN) as client:
        s = client.open_session()
        try:
            s.add_scan("case_a", vol, ann)
            s.add_scan("case_b", mirrored, mirrored_ann)
            assert s.add_scan("case_c", vol) == {"scans": 3, "marked": 2}  # unmarked: not trained on
            with pytest.raises(Exception, match="scan name"):
                s.add_scan("bad name!", vol)
            s.cohort_train(max_steps=4, budget_seconds=300, batch=2, patch=[32, 32], refresh_at=[], threads=1)
            events = list(s.cohort_events())
            assert events[-1].state == "done", events[-1]
            assert events[-1].step == 4
            path = s.download_cohort_model(tmp_path / "cohort.safetensors")
        finally:
            s.close()
    _, meta = load_checkpoint(path)
    assert meta["classes"] == [1, 2] and sorted(meta["cohort"]["scans"]) == ["case_a", "case_b"]
    labels, unc = CohortModel.load(path, device="cpu").predict(vol, ann)
    assert labels.shape == vol.shape and unc.shape == vol.shape
