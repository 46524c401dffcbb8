"""coord.recipes: locks, elections, barriers, queues built on KV, Txn, Lease and Watch.

Every recipe takes a client first: a sync :class:`coord.Client` gives the blocking face
(``with Lock(client, "/jobs"):``), a :class:`coord.AsyncClient` the async one
(``async with Lock(aclient, "/jobs"):``). Both run the same async implementation. Keys
follow etcd's ``concurrency`` and ``experimental/recipes`` layouts where those exist, so the
recipes interoperate with ``etcdctl lock``/``elect`` and Go programs. See docs/recipes.md.
"""

from .barrier import Barrier, DoubleBarrier
from .counter import Counter
from .election import Election
from .errors import (
    ClaimLostError,
    ElectionNotLeaderError,
    LockNotHeldError,
    LockTimeoutError,
    NoLeaderError,
    RecipeError,
    SessionExpiredError,
    TooManyClientsError,
)
from .lock import Lock
from .queue import PriorityQueue, Queue
from .rwlock import RWLock
from .semaphore import Semaphore
from .session import Session
from .workqueue import WorkQueue

__all__ = [
    "Barrier",
    "ClaimLostError",
    "Counter",
    "DoubleBarrier",
    "Election",
    "ElectionNotLeaderError",
    "Lock",
    "LockNotHeldError",
    "LockTimeoutError",
    "NoLeaderError",
    "PriorityQueue",
    "Queue",
    "RWLock",
    "RecipeError",
    "Semaphore",
    "Session",
    "SessionExpiredError",
    "TooManyClientsError",
    "WorkQueue",
]
