"""coord.recipes: locks, elections, barriers, queues built on KV, Txn, Lease and Watch."""
