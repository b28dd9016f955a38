"""Sufficient statistics of two layers' activations, in one of two forms.

* :mod:`~convergent.moments.primal` — the d × d sums (:class:`Moments`): every
  measure, accumulated over row chunks; for views up to ``max_features`` wide.
* :mod:`~convergent.moments.dual` — each network's centred n × n Gram
  (:class:`GramMoments`): every measure that depends on the data only through
  inner products between samples, exact for views of any width, accumulated over
  feature blocks.
* :mod:`~convergent.moments.streaming` — the pass over two activation stores that
  picks the form per view (:func:`streaming_moments`); :mod:`~convergent.moments.arrays` —
  the same choice for arrays in memory (:func:`moments_from_arrays`).
* :mod:`~convergent.moments.storage` — the ``.npz`` files (:func:`save_moments`,
  :func:`load_moments`).

A measure asks for what it needs (``m.cxy`` … or ``m.gram("a")`` …); asking the
other form raises :class:`FormUnavailable`, which the measures table reports as
``unavailable: <measure> needs …; view … is dual (d=…, n=…)``.
"""

from convergent.moments.base import (DEFAULT_MOMENT_PARAMS, DUAL, PRIMAL, FormUnavailable, MeasureUnavailable,
                                     choose_form, subsample_indices)
from convergent.moments.arrays import moments_from_arrays
from convergent.moments.dual import GramAccumulator, GramMoments, gram_from_arrays, gram_memory_gib
from convergent.moments.primal import MomentAccumulator, Moments, accumulate, moments_memory_gib
from convergent.moments.storage import FORMAT_VERSION, load_moments, save_moments
from convergent.moments.streaming import streaming_moments

__all__ = ["DEFAULT_MOMENT_PARAMS", "DUAL", "FORMAT_VERSION", "FormUnavailable", "GramAccumulator", "GramMoments",
           "MeasureUnavailable", "MomentAccumulator", "Moments", "PRIMAL", "accumulate", "choose_form",
           "gram_from_arrays", "gram_memory_gib", "load_moments", "moments_from_arrays", "moments_memory_gib",
           "save_moments", "streaming_moments", "subsample_indices"]
