"""The benchmark suite behind ``sparseseg bench``: settings x methods x cases, metrics, simulated
active learning, markdown tables and plots.  ``bench/`` holds the committed results.

Public API::

    from napari_sparseseg.benchmarking import Budget, SuiteSpec, run_suite, register_method, METHODS
"""

from .cases import DATASETS, Case, find_data_root, list_cases, load_case, make_annotation
from .methods import METHODS, Budget, MethodResult, get_method, register_method
from .runner import SuiteSpec, read_rows, run_method, run_suite

__all__ = [
    "DATASETS",
    "METHODS",
    "Budget",
    "Case",
    "MethodResult",
    "SuiteSpec",
    "find_data_root",
    "get_method",
    "list_cases",
    "load_case",
    "make_annotation",
    "read_rows",
    "register_method",
    "run_method",
    "run_suite",
]
