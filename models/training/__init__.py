"""Training under mpiexec: the synchronous trainer (:mod:`models.training.trainer`), a run's
checkpoints (:mod:`models.training.checkpoints`: which arrays, their names, keeping the newest)
and its outputs (:mod:`models.training.metrics`: metrics.jsonl, the progress bar, loss.png)."""
