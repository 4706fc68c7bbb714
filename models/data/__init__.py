"""Training data: sources that draw deterministic, normalised (H, W, C, B) batches
(:mod:`models.data.sources`) and the readers that bring images from disk or scikit-image
(:mod:`models.data.readers`). No MPI here: the caller distributes."""

from .sources import ArrayImages, BundledImages, ImageFolder, ImageSource, make_dataset, normalise_images

__all__ = ["ArrayImages", "BundledImages", "ImageFolder", "ImageSource", "make_dataset", "normalise_images"]
