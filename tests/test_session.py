"""Session save/reopen and the annotation autosave: round trips, atomicity, damaged files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sparseseg.session import (
    AnnotationAutosave,
    ClassTable,
    Session,
    SessionError,
    image_fingerprint,
)


def _session(shape=(4, 6, 5)) -> Session:
    rng = np.random.default_rng(0)
    ann = np.zeros(shape, np.int16)
    ann[1, 2, 1:4] = 1
    ann[2, 0, :] = 3
    aff = np.diag([1.5, 0.7, 0.7, 1.0])
    aff[:3, 3] = [10, -4, 2]
    return Session(
        image_path="/data/img.nii.gz",
        image_fingerprint="abc",
        image_shape=shape,
        image_affine=aff,
        classes=ClassTable.default(2),
        annotations=ann,
        pseudo_labels=rng.integers(0, 3, shape).astype(np.int16),
        pseudo_confidence=rng.random(shape).astype(np.float32),
        prediction=rng.integers(0, 3, shape).astype(np.int16),
        embedding_cache="/tmp/cache",
        reviewed=[2, 0],
        settings={"strategy": "entropy"},
    )


def test_session_round_trip(tmp_path) -> None:
    s = _session()
    folder = s.save(tmp_path / "case", write_checkpoint=lambda p: p.write_bytes(b"weights"))
    assert folder.name == "case.sparseseg"
    r = Session.load(folder)
    np.testing.assert_array_equal(r.annotations, s.annotations)
    np.testing.assert_array_equal(r.pseudo_labels, s.pseudo_labels)
    np.testing.assert_allclose(r.pseudo_confidence, s.pseudo_confidence, atol=1e-3)
    np.testing.assert_array_equal(r.prediction, s.prediction)
    np.testing.assert_allclose(r.image_affine, s.image_affine)
    assert r.classes == s.classes and r.classes.background == 3
    assert r.checkpoint is not None and r.checkpoint.read_bytes() == b"weights"
    assert r.reviewed == [0, 2] and r.settings == {"strategy": "entropy"} and r.embedding_cache == "/tmp/cache"


def test_failed_save_keeps_the_previous_session(tmp_path) -> None:
    s = _session()
    folder = s.save(tmp_path / "case.sparseseg")
    s2 = _session()
    s2.annotations[:] = 1

    def boom(path):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        s2.save(folder, write_checkpoint=boom)
    np.testing.assert_array_equal(Session.load(folder).annotations, s.annotations)
    assert [p.name for p in tmp_path.iterdir()] == ["case.sparseseg"]  # no temporaries left


def test_grid_mismatch_and_newer_version_and_damage(tmp_path) -> None:
    with pytest.raises(SessionError, match="grid"):
        Session("x", "f", (2, 2, 2), np.eye(4), ClassTable.default(), np.zeros((2, 2, 3), np.int16))
    folder = _session().save(tmp_path / "s")
    info = json.loads((folder / "session.json").read_text())
    info["version"] = 99
    (folder / "session.json").write_text(json.dumps(info))
    with pytest.raises(SessionError, match="newer"):
        Session.load(folder)
    info["version"] = 1
    (folder / "session.json").write_text(json.dumps(info))
    (folder / "annotations.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(SessionError, match="damaged"):
        Session.load(folder)
    with pytest.raises(SessionError, match="not a napari-sparseseg session"):
        Session.load(tmp_path)


def test_check_image_uses_the_fingerprint() -> None:
    img = np.random.default_rng(1).random((4, 6, 5)).astype(np.float32)
    s = _session()
    s.image_fingerprint = image_fingerprint(img)
    s.check_image(img)
    other = img.copy()
    other[0, 0, 0] += 1
    with pytest.raises(SessionError, match="fingerprint"):
        s.check_image(other)


def test_fingerprint_strided_for_big_arrays() -> None:
    a = np.zeros((10, 100, 100), np.float32)
    assert image_fingerprint(a, max_bytes=1000) != image_fingerprint(a + 1, max_bytes=1000)
    assert image_fingerprint(a, max_bytes=1000) == image_fingerprint(a.copy(), max_bytes=1000)


def test_autosave_round_trip_and_clean_exit(tmp_path) -> None:
    auto = AnnotationAutosave("f00", root=tmp_path)
    assert not auto.exists()
    with pytest.raises(SessionError):
        auto.load()
    labels = np.zeros((3, 4, 4), np.int16)
    labels[1, 1, 1] = 2
    auto.save(labels, ClassTable.default(2), {"image": "x.nii"})
    st = auto.load()
    np.testing.assert_array_equal(st.labels, labels)
    assert st.n_marked == 1 and not st.clean_exit and st.meta == {"image": "x.nii"}
    auto.mark_clean_exit()
    assert auto.load().clean_exit
    labels[0, 0, 0] = 3
    auto.save(labels, ClassTable.default(2))  # a new change resets the flag
    st = auto.load()
    assert st.n_marked == 2 and not st.clean_exit
    assert not [p for p in auto.folder.iterdir() if "tmp" in p.name]
    auto.clear()
    assert not auto.exists()


def test_class_table_rules() -> None:
    t = ClassTable.default(2, names={1: "RV"})
    assert t.foreground_ids == (1, 2) and t.background == 3 and t.names[1] == "RV"
    spec = t.add("LV")
    assert spec.id == 4 and t.foreground_ids == (1, 2, 4)
    with pytest.raises(SessionError, match="background"):
        t.remove(3)
    t.remove(4)
    assert ClassTable.from_dict(t.to_dict()) == t
    with pytest.raises(SessionError, match="unique"):
        ClassTable([*t.classes, t.classes[0]], 3)
    with pytest.raises(SessionError, match="background label 7"):
        ClassTable(t.classes, 7)
    with pytest.raises(SessionError, match="malformed"):
        ClassTable.from_dict({"classes": [{"id": 1}]})
