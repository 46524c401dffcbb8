"""Errors raised by the recipes.

Every recipe error derives from :class:`coord.errors.CoordError`, so ``except CoordError``
catches client and recipe failures alike. Where etcd's Go ``concurrency`` / ``recipe``
packages have an equivalent error, the message is etcd's verbatim (``"mutex: session is
expired"`` and so on) so logs read the same whichever client produced them.

:class:`SessionExpiredError` and :class:`LockTimeoutError` are the client's classes,
re-exported here: a recipe raises them when its session's lease is lost and when a blocking
call runs out of time (for calls that report a timeout by raising rather than returning
``False``).
"""

from __future__ import annotations

from coord.errors import CoordError, LockTimeoutError, SessionExpiredError

__all__ = [
    "ClaimLostError",
    "ElectionNotLeaderError",
    "LockNotHeldError",
    "LockTimeoutError",
    "NoLeaderError",
    "RecipeError",
    "SessionExpiredError",
    "TooManyClientsError",
]


class RecipeError(CoordError):
    """Base class of the errors specific to recipes."""

    default_message = "coord: recipe error"


class LockNotHeldError(RecipeError):
    """``release()`` (or an ownership compare) on a lock that this object does not hold."""

    default_message = "mutex: lock has already been released"


class ElectionNotLeaderError(RecipeError):
    """``proclaim()`` / ``resign()`` by a participant that is not (or no longer) the leader."""

    default_message = "election: not leader"


class NoLeaderError(RecipeError):
    """``leader()`` found no campaigner under the election prefix."""

    default_message = "election: no leader"


class TooManyClientsError(RecipeError):
    """A :class:`~coord.recipes.DoubleBarrier` already has its full count of participants."""

    default_message = "too many clients"


class ClaimLostError(RecipeError):
    """``ack()`` / ``nack()`` of a work item whose claim is gone (the worker's session was
    lost, so the item is visible again and will be redelivered)."""

    default_message = "workqueue: claim lost; the item will be redelivered"
