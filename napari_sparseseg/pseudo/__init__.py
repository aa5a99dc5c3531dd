"""Pseudo-labels from sparse marks: random walker, SAM prompts, and their fusion (SA-Net's first half).

Public API::

    from napari_sparseseg.pseudo import make_pseudo_labels, PseudoLabels
    pl = make_pseudo_labels(volume, ann, method="auto")
    targets = pl.targets(t=0.5)   # label where confident, -1 (ignore) elsewhere
"""

from .api import DEFAULT_METHOD, DEFAULT_THRESHOLD, PSEUDO_METHODS, make_pseudo_labels, method_names
from .types import PseudoLabels
from .walker import random_walker_pseudo, walker_probabilities

__all__ = ["DEFAULT_METHOD", "DEFAULT_THRESHOLD", "PSEUDO_METHODS", "PseudoLabels", "make_pseudo_labels", "method_names",
           "random_walker_pseudo", "walker_probabilities"]
