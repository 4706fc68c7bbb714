"""Training data: sources that draw deterministic, normalised (H, W, C, B) batches, each
sample a function of (seed, step, sample index) alone (:mod:`models.data.sources`; streaming
image folders in :mod:`models.data.folder`, images in tar shards in :mod:`models.data.shards`,
video frames in :mod:`models.data.video`, their file index in :mod:`models.data.index`), and
the readers that bring images from disk or scikit-image (:mod:`models.data.readers`). No MPI
here: the caller distributes."""

from .factory import SOURCES, make_dataset
from .folder import ImageFolder, StreamingSource
from .index import FileIndex
from .shards import TarShards
from .sources import ArrayImages, BundledImages, DataError, ImageSource, normalise_image, normalise_images

__all__ = ["SOURCES", "ArrayImages", "BundledImages", "DataError", "FileIndex", "ImageFolder", "ImageSource",
           "StreamingSource", "TarShards", "make_dataset", "normalise_image", "normalise_images"]
