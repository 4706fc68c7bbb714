"""models: the sparse autoencoder, the 9-layer network, training and the ``cots`` command.

Today it holds the ``cots`` command-line entry point (``cots info``); training, neuron
analysis and the planner arrive with their issues.
"""
