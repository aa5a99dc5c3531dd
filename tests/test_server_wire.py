"""The server's payloads and session table without a server: no pickle, size checks, exact updates."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.io.volume import Volume

pytest.importorskip("fastapi")

from napari_sparseseg.server import wire  # noqa: E402
from napari_sparseseg.server.auth import TokenError, check_server_token, is_loopback, read_token, token_matches  # noqa: E402


def test_npz_with_an_object_array_is_refused() -> None:
    buf = io.BytesIO()
    np.savez(buf, labels=np.array([{"a": 1}], dtype=object))
    with pytest.raises(wire.WireError, match="refused"):
        wire.read_npz(buf.getvalue(), 1 << 20)


def test_npz_that_expands_past_the_limit_is_refused_before_loading() -> None:
    data = wire.to_npz({"array": np.zeros((64, 64, 64), np.float32)})  # ~1 MB of zeros, a few KB compressed
    assert len(data) < 20_000
    with pytest.raises(wire.TooLarge):
        wire.read_npz(data, 100_000)


def test_volume_and_marks_round_trip() -> None:
    rng = np.random.default_rng(0)
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    vol = Volume(rng.normal(size=(4, 5, 6)).astype(np.float32), affine)
    back = wire.volume_from_npz(wire.volume_to_npz(vol), 1 << 20)
    assert np.array_equal(back.array, vol.array) and np.allclose(back.affine, affine)
    lab = np.zeros((4, 5, 6), np.int16)
    lab[0, 0, :2], lab[1, 1, 1], lab[2, 2, 2] = 1, 2, 3
    ann = SparseAnnotation(lab, 3, (1, 2), {1: "a", 2: "b"})
    got = wire.annotation_from_npz(wire.annotation_to_npz(ann), 1 << 20)
    assert np.array_equal(got.labels, lab) and got.background_label == 3 and got.classes == (1, 2)
    assert got.class_names == {1: "a", 2: "b"}


def test_updates_carry_only_the_changed_box_and_rebuild_the_labels_exactly() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, size=(10, 20, 30)).astype(np.int16)
    unc = rng.random((10, 20, 30)).astype(np.float32)
    enc, dec = wire.UpdateEncoder(), wire.UpdateDecoder()
    first = enc.encode(a, unc)
    assert dec.apply(first) == (slice(0, 10), slice(0, 20), slice(0, 30))
    b = a.copy()
    b[3:5, 2:4, 7] = (b[3:5, 2:4, 7] + 1) % 3
    second = enc.encode(b, unc)
    assert second["labels"]["box"] == [[3, 5], [2, 4], [7, 8]] and "uncertainty" not in second
    assert dec.apply(second) == (slice(3, 5), slice(2, 4), slice(7, 8))
    assert np.array_equal(dec.labels, b)
    assert np.abs(dec.uncertainty - unc).max() <= 0.5 / wire.UNC_LEVELS + 1e-6
    assert enc.encode(b, unc) == {"shape": [10, 20, 30]}  # nothing changed: nothing sent
    drift = np.clip(unc + 0.5 / wire.UNC_LEVELS, 0, 1)  # within the tolerance everywhere: not sent
    assert "uncertainty" not in enc.encode(b, drift)
    moved = drift.copy()
    moved[5, 6, 7] = 1.0 - moved[5, 6, 7]  # one voxel moves a lot: only its box travels
    third = enc.encode(b, moved)
    assert third["uncertainty"]["box"] == [[5, 6], [6, 7], [7, 8]]
    dec.apply(third)
    assert np.abs(dec.uncertainty - moved).max() <= (wire.UNC_TOLERANCE + 0.5) / wire.UNC_LEVELS + 1e-6


def test_malformed_update_is_a_one_line_error() -> None:
    dec = wire.UpdateDecoder()
    with pytest.raises(wire.WireError):
        dec.apply({"shape": [2, 2, 2], "labels": {"box": [[0, 9], [0, 2], [0, 2]], "dtype": "<i2", "data": ""}})


def test_token_rules(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("SPARSESEG_TOKEN", raising=False)
    monkeypatch.delenv("SPARSESEG_TOKEN_FILE", raising=False)
    assert read_token() is None
    f = tmp_path / "tok"
    f.write_text("s3cret-token-from-a-file-0123\n")
    assert read_token(f) == "s3cret-token-from-a-file-0123"
    monkeypatch.setenv("SPARSESEG_TOKEN", "from-the-environment-0123456")
    assert read_token(f) == "from-the-environment-0123456"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    check_server_token("127.0.0.1", None)  # loopback without a token: allowed
    with pytest.raises(TokenError, match="without a token"):
        check_server_token("0.0.0.0", None)
    with pytest.raises(TokenError, match="too short"):
        check_server_token("0.0.0.0", "short")
    assert token_matches("abc", "abc") and not token_matches("abd", "abc") and not token_matches(None, "abc")


def test_idle_sessions_are_removed_with_their_files(tmp_path) -> None:
    from napari_sparseseg.server.sessions import SessionStore

    store = SessionStore(tmp_path, idle_timeout=0.2, max_sessions=2)
    a, b = store.create(), store.create()
    (a.folder / "upload.npz").write_bytes(b"x")
    assert a.folder.is_dir() and b.folder.is_dir() and a.folder != b.folder
    time.sleep(0.3)
    b.touch()
    assert store.reap() == [a.id]
    assert not a.folder.exists() and b.folder.is_dir() and store.get(a.id) is None
    store.close()
    assert not b.folder.exists() and len(store) == 0


def test_serve_refuses_a_public_address_without_a_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from napari_sparseseg.cli import main

    monkeypatch.delenv("SPARSESEG_TOKEN", raising=False)
    monkeypatch.delenv("SPARSESEG_TOKEN_FILE", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to listen on 0.0.0.0 without a token" in capsys.readouterr().err
