"""The fleet layer: what the fleet decides and when, below the service and above dispatch/store.

``cycle`` (pure: snapshot -> problem, solution -> leased plans), ``schedule`` (when to plan),
``leadership`` and ``replication`` (one leader; queues between replicas), ``signals`` (prices and
each house's grid signal), ``solver`` (the LP in solver processes), ``outbox`` (the protocol the
service implements to take plans and signals).  ``aggregator.planner`` orchestrates them.
Nothing here imports ``aggregator.service`` (tests/unit/test_aggregator_layers.py)."""
