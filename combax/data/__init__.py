"""Data that needs no download: package-bundled images, procedural data sets and shipped tables."""

from ._bundled import DEPTH_TABLES, depth_table_path
from ._images import ImageDataset, digits, mnist5k, pad_to, stratified_split

__all__ = [
    "DEPTH_TABLES",
    "depth_table_path",
    "ImageDataset",
    "digits",
    "mnist5k",
    "pad_to",
    "stratified_split",
    "available",
]


def available() -> dict[str, str]:
    """Name -> one-line description of every data set that loads on this installation."""
    found = {}
    for name, loader in (("mnist5k", mnist5k), ("digits", digits)):
        try:
            ds = loader()
        except ImportError as exc:  # reported, not hidden: the message names the extra
            found[name] = f"unavailable: {exc}"
            continue
        found[name] = f"{len(ds)} images {ds.images.shape[1]}x{ds.images.shape[2]}, {ds.n_classes} classes"
    return found
