"""One registry style for every extension point: pseudo-label methods, SAM backends, segmentation
methods, review strategies, simulated annotators and benchmark contenders.

Why one style: adding a prompt kind or a method used to touch seven or eight files written four ways
(a decorator plus module discovery, a decorator, a dict, tuples with ``startswith`` chains).  Now an
extension is one module that calls ``REGISTRY.register(name)`` on its function or class, plus its test.

A :class:`Registry` is a read-only mapping (``name in reg``, ``reg[name]``, ``reg.items()``), so code
that read the old dicts keeps working; :meth:`Registry.get` is the lookup for user input: an unknown
name raises one line that lists the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar, overload

from .errors import SparsesegError

T = TypeVar("T")


class UnknownNameError(SparsesegError):
    """A name that no extension registered (a typo in ``--method``, ``--backend``, ``--strategy``...)."""


class Registry(Mapping[str, T], Generic[T]):
    """Named extensions of one kind, in registration order.

    Args:
        kind: what the entries are, for messages ("pseudo-label method", "review strategy").
        load: called once before the first lookup (imports modules that register themselves).
        error: the :class:`SparsesegError` subclass an unknown name raises (default
            :class:`UnknownNameError`; e.g. :class:`CheckpointError` for a SAM backend spec).
    """

    def __init__(self, kind: str, load: Callable[[], object] | None = None,
                 error: type[SparsesegError] = UnknownNameError) -> None:
        self.kind = kind
        self.error = error
        self._items: dict[str, T] = {}
        self._load = load
        self._loaded = load is None

    # ------------------------------------------------------------------ registering
    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, item: T) -> T: ...

    def register(self, name: str, item: T | None = None):  # type: ignore[no-untyped-def]
        """``@reg.register("name")`` on a function or class, or ``reg.register("name", item)``.

        Registering a name again replaces the entry (a test's stand-in, a module reloaded)."""
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"a {self.kind} name must be one word, got {name!r}")
        if item is not None:
            self._items[name] = item
            return item

        def deco(obj: T) -> T:
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def pop(self, name: str, default: T | None = None) -> T | None:
        """Remove and return ``name``'s entry (tests remove what they registered)."""
        return self._items.pop(name, default)

    # ------------------------------------------------------------------ lookup
    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True  # first, so a module that looks itself up while loading does not recurse
            assert self._load is not None
            self._load()

    def get(self, name: str) -> T:  # type: ignore[override]
        """The entry ``name``; an unknown name raises :attr:`error` (one line listing the choices)."""
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._items)}") from None

    def names(self) -> tuple[str, ...]:
        self._ensure_loaded()
        return tuple(self._items)

    def __getitem__(self, name: str) -> T:
        self._ensure_loaded()
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        self._ensure_loaded()
        return iter(list(self._items))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._items)})"
