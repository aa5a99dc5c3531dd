"""Engine errors become napari notifications, never a frozen or half-disabled widget (MONAI Label #1151)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ..loop.background import (
    error_message,  # one wording for every failure, background or not
)

log = logging.getLogger("napari_sparseseg.widget")
F = TypeVar("F", bound=Callable[..., Any])


def notify_error(message: str) -> None:
    """Show a one-line error in napari (falls back to the log outside a viewer)."""
    try:
        from napari.utils.notifications import show_error

        show_error(message)
    except Exception:  # pragma: no cover - no napari notification manager
        log.error(message)


def notify_info(message: str) -> None:
    try:
        from napari.utils.notifications import show_info

        show_info(message)
    except Exception:  # pragma: no cover
        log.info(message)


def guarded(method: F) -> F:
    """Wrap a widget slot: on an exception, notify, log the traceback and re-sync the buttons.

    The owning object may define ``_sync_buttons()``; it runs after every call, failed or not, so no
    button stays greyed out after a failure.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - this is the last line of defence of the GUI
            log.exception("error in %s", method.__name__)
            notify_error(error_message(exc))
            self._last_error = error_message(exc)
            return None
        finally:
            sync = getattr(self, "_sync_buttons", None)
            if sync is not None:
                try:
                    sync()
                except Exception:  # pragma: no cover
                    log.exception("button sync failed")

    return wrapper  # type: ignore[return-value]
