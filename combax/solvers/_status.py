"""The status shared by every solver result."""

from enum import StrEnum


class Status(StrEnum):
    """How a solve ended.

    A ``StrEnum``: ``result.status == "optimal"`` holds, and the value prints as the plain word.
    Malformed input raises ``ValueError``; a well-formed problem that has no solution returns a status.
    """

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"
    NODE_LIMIT = "node_limit"
