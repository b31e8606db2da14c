import os

# Tests run on CPU; keep JAX from grabbing every core's worth of threads and from preallocating.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# Under pytest-xdist every worker already has a core: numba's parallel kernels run on one thread there (their results
# do not depend on the thread count), instead of each worker's threads competing for both cores.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
