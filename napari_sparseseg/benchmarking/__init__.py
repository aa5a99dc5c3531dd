"""The benchmark suite behind ``sparseseg bench``: settings x methods x cases, metrics, simulated
active learning, markdown tables and plots.  ``bench/`` holds the committed results.

Public API::

    from napari_sparseseg.benchmarking import Budget, SuiteSpec, run_suite, register_contender, CONTENDERS
"""

from .cases import DATASETS, Case, find_data_root, list_cases, load_case, make_annotation
from .contenders import CONTENDERS, Budget, MethodResult, get_contender, register_contender
from .runner import SuiteSpec, read_rows, run_contender, run_suite

__all__ = [
    "DATASETS",
    "CONTENDERS",
    "Budget",
    "Case",
    "MethodResult",
    "SuiteSpec",
    "find_data_root",
    "get_contender",
    "list_cases",
    "load_case",
    "make_annotation",
    "read_rows",
    "register_contender",
    "run_contender",
    "run_suite",
]
