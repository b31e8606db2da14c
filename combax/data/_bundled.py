"""Files shipped inside the combax package (released tables of the original papers)."""

from importlib import resources
from pathlib import Path

DEPTH_TABLES = {
    "mbv2_1.0": ("mbv2_1.0_time_fish_gpu1_1228.csv", "mbv2_1.0_opt_time_fish_gpu1_1228.csv"),
    "mbv2_1.4": ("mbv2_1.4_time_fish_gpu1_0103.csv", "mbv2_1.4_opt_time_fish_gpu1_0103.csv"),
    "vgg19": ("vgg19_no_trt_time_fish_gpu1_0317.csv", "vgg19_no_trt_opt_time_fish_gpu1_0317.csv"),
}


def depth_table_path(network: str, kind: str = "time") -> Path:
    """Path of a released latency table of the depth-compression paper (TensorRT 8.4 / RTX 2080 Ti).

    Parameters
    ----------
    network : one of ``"mbv2_1.0"``, ``"mbv2_1.4"``, ``"vgg19"``.
    kind : ``"time"`` (one row per allowed merged block: ``id,st,end,time,stdev``) or ``"opt_time"`` (the
        original stage-1 result, with a ``breaks`` column).
    """
    if network not in DEPTH_TABLES:
        raise ValueError(f"`network` must be one of {sorted(DEPTH_TABLES)}; got {network!r}")
    if kind not in ("time", "opt_time"):
        raise ValueError(f"`kind` must be 'time' or 'opt_time'; got {kind!r}")
    name = DEPTH_TABLES[network][0 if kind == "time" else 1]
    return Path(str(resources.files("combax.data") / "bundled" / "depth_tables" / name))
