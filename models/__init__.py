"""models: the sparse autoencoder, the 9-layer network, and everything around training it.

The model, at the top:

- :mod:`models.config`: the typed configuration (TOML plus ``--set``, checked once);
- :mod:`models.autoencoder`: one reconstruction-TICA stage (encoder, L2 pooling, decoder);
- :mod:`models.network`: stages of [filtering, pooling, LCN]; Le et al.'s sizes;
- :mod:`models.optim`: optimisers and learning-rate schedules, on each rank's own blocks;
- :mod:`models.build`: a configuration turned into the grid, the network and the data source.

One subpackage per concern, each using the model and none another's private names:

- :mod:`models.training`: the synchronous trainer, a run's checkpoints, metrics;
- :mod:`models.data`: deterministic batches from bundled images, folders, CIFAR-10, STL-10;
- :mod:`models.analysis`: ``cots neurons``: object-selective neurons chosen honestly,
  baselines, optimal stimuli, figures and ``report.html``;
- :mod:`models.planning`: ``cots plan``: per-rank costs from shapes alone, machine rates.

On top: :mod:`models.cli`, the ``cots`` command (``info``, ``train``, ``neurons``, ``plan``).
"""
