"""Small pieces truly shared by the edge agent, the aggregator and the simulator.

Only units, time and the plain (protobuf-free) message dataclasses live here:
the wire contract is ``vpp.v1``, and each side converts at its own boundary.
"""
