"""``cots neurons``: what a run's neurons learned. :mod:`~models.analysis.run` drives it
(:func:`analyse_run`); :mod:`~models.analysis.activations` computes a layer's activations
where its neurons live; :mod:`~models.analysis.selectivity` (pure) and
:mod:`~models.analysis.neurons` choose the most selective neurons honestly across ranks;
:mod:`~models.analysis.stimulus` finds optimal stimuli; :mod:`~models.analysis.figures`,
:mod:`~models.analysis.report` and :mod:`~models.analysis.report_html` draw and write the report."""

from distarray.lazy import exports

__all__ = ["Analysis", "analyse_run"]

__getattr__, __dir__ = exports(__name__, {"Analysis": "run", "analyse_run": "run"})  # the pure modules stay MPI-free
