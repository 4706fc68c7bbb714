"""models: the sparse autoencoder, the 9-layer network, training and the ``cots`` command.

- :mod:`models.autoencoder`: one reconstruction-TICA stage (encoder, L2 pooling, decoder).
- :mod:`models.network`: stages of [filtering, pooling, LCN]; Le et al.'s sizes.
- :mod:`models.trainer`, :mod:`models.optim`: synchronous training over ranks and replicas.
- :mod:`models.data`, :mod:`models.datasets`: bundled images, image folders, CIFAR-10, STL-10.
- :mod:`models.checkpoint`: per-rank shards and a manifest, loadable at any rank count.
- :mod:`models.analysis`: ``cots neurons``: object-selective neurons, honestly chosen
  (:mod:`models.selectivity`, :mod:`models.neurons`), baselines, optimal stimuli
  (:mod:`models.stimulus`), figures and ``report.html`` (:mod:`models.report`).
- :mod:`models.planner`, :mod:`models.profile`: ``cots plan``: per-rank costs from shapes
  alone and the machine rates of its time model.
- :mod:`models.config`, :mod:`models.metrics`, :mod:`models.cli`: configurations, run
  outputs and the ``cots`` command (``cots info``, ``cots train``, ``cots neurons``, ``cots plan``).
"""
