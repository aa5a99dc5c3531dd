"""Keep triton's bundled LLVM from crashing napari on Mesa (llvmpipe) OpenGL.

torchvision (imported by MONAI) imports ``torch._dynamo``, which imports ``triton``.  ``libtriton.so``
carries its own statically linked LLVM and exports those symbols; once napari's canvas has loaded
Mesa's ``libLLVM`` (software OpenGL: VMs, remote desktops, xvfb, AMD drivers), the dynamic linker binds
libtriton's LLVM calls to Mesa's ABI-incompatible copy and the process dies with SIGSEGV on import
(the same clash as tensorflow/tensorflow#124205 and pytorch/pytorch#96060).  Loading libtriton with
``RTLD_DEEPBIND`` makes it resolve its own symbols first.  We never run triton kernels (no
``torch.compile``), so the only job here is to let the import succeed.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def isolate_triton() -> bool:
    """Pre-load ``triton._C.libtriton`` with RTLD_DEEPBIND (Linux only); True if it did."""
    if not sys.platform.startswith("linux") or not hasattr(os, "RTLD_DEEPBIND"):
        return False
    if "triton._C.libtriton" in sys.modules:
        return False
    try:
        if importlib.util.find_spec("triton") is None:
            return False
    except (ImportError, ValueError):
        return False
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import triton._C.libtriton  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken triton is torch's problem, not a reason to fail here
        return False
    finally:
        sys.setdlopenflags(flags)
    return True
