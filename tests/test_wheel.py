"""The package as a user gets it: build the wheel, install it into a fresh virtual environment, and
open the bundled sample through napari's own plugin API, from outside the source tree.

The fresh environment reuses this environment's installed packages (torch, napari, ...) through a
folder of links that leaves out this checkout's own (editable) install, so nothing is downloaded and
only the wheel provides ``napari_sparseseg``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.gui, pytest.mark.wheel]

_OPEN_SAMPLE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import napari
    import napari_sparseseg
    from npe2 import PluginManager

    from importlib.metadata import version

    here = Path(napari_sparseseg.__file__).resolve()
    assert here.is_relative_to(Path(sys.prefix).resolve()), f"imported from {here}, not the wheel"
    assert version("napari-sparseseg") == napari_sparseseg.__version__  # one source for the version
    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-sparseseg")
    assert {s.key for s in manifest.contributions.sample_data} == {"hippocampus", "brain_tumor"}
    viewer = napari.Viewer(show=False)
    try:
        viewer.open_sample("napari-sparseseg", "hippocampus")
        viewer.open_sample("napari-sparseseg", "brain_tumor")
        for layer in viewer.layers:
            print("LAYER", type(layer).__name__, layer.name, ",".join(map(str, layer.units)), sep="|")
    finally:
        viewer.close()
    """
)


def _linked_site_packages(dest: Path) -> Path:
    """This environment's site-packages as links, minus napari-sparseseg's own install."""
    src = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for entry in src.iterdir():
        low = entry.name.lower()
        if low.startswith(("napari_sparseseg", "__editable__", "napari-sparseseg")) or low.endswith(".pth"):
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _has_build_backend() -> bool:
    """setuptools >= 77 (license expressions) importable here."""
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # no build isolation where the build backend is already installed (offline, faster); else pip
    # fetches setuptools into an isolated build environment as it would for a user
    isolation = ["--no-build-isolation"] if _has_build_backend() else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out), str(REPO)], cwd=out)
    [whl] = out.glob("napari_sparseseg-*.whl")
    return whl


def test_wheel_ships_the_manifest_and_the_samples(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_sparseseg/napari.yaml" in names
    assert "napari_sparseseg/sample_data/README.md" in names
    for case in ("hippocampus/imagesTr/hippocampus_001", "hippocampus/labelsTr/hippocampus_001",
                 "brain_tumor/imagesTr/PGBM-008_1993-06-10", "brain_tumor/labelsTr/PGBM-008_1993-06-10"):
        assert f"napari_sparseseg/sample_data/{case}.nii.gz" in names
    assert not any(n.startswith(("tests/", "bench/", "sample_data/")) for n in names)


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X server (run under xvfb-run)")
def test_installed_wheel_opens_the_sample_in_napari(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip())
    linked = _linked_site_packages(tmp_path / "deps")
    (site / "_sparseseg_test_deps.pth").write_text(f"{linked}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("SPARSESEG_SAMPLE_DATA", None)  # the wheel's own copy, not an override
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp_path, env=env)
    _run([str(py), "-m", "pip", "check"], cwd=tmp_path, env=env)
    out = _run([str(py), "-c", _OPEN_SAMPLE], cwd=tmp_path, env=env)
    layers = [line.split("|")[1:] for line in out.splitlines() if line.startswith("LAYER")]
    assert all(units == "millimeter,millimeter,millimeter" for *_, units in layers), out
    assert [tuple(x[:2]) for x in layers] == [
        ("Image", "hippocampus_001"), ("Labels", "hippocampus_001 labels"),
        ("Image", "PGBM-008_1993-06-10"), ("Labels", "PGBM-008_1993-06-10 labels"),
    ], out
