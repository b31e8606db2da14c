"""Subcommands of the ``combax`` command, one module per family.

Each module here defines ``register(subparsers)`` to add its subcommand, and may define ``demo(ctx)`` for its
step in ``combax demo`` (see :mod:`combax.demo`) with an integer ``DEMO_ORDER``. The CLI discovers the modules,
so adding a family touches no shared file.
"""
