"""The fault-injection ("chaos") suite: nemeses, workloads, a seeded scheduler and checkers.

See docs/chaos.md. Modules are named after their concept: :mod:`history` (recorded operations
and their outcomes), :mod:`linearizable` (a WGL register checker), :mod:`locksafety`,
:mod:`leasesafety`, :mod:`watchguarantees` (the other checkers), :mod:`nemesis` (faults),
:mod:`workloads` (client load that records histories; :mod:`lockworker` processes writing
to a :mod:`fenced` register), :mod:`clusterops` (membership, leader transfer and compaction
RPCs), :mod:`schedule` (seeded fault schedules) and :mod:`run` (one chaos run end to end).
"""
