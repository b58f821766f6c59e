"""The edge agent as an S2 CEM (EN 50491-12-2): third-party Resource Managers connect over
WebSocket (docs/s2-cem.md).

wire.py      one frame -> a validated S2 message (s2-python's parser) or a ReceptionStatus refusal
state.py     immutable per-RM snapshots and the coordinator that publishes them
session.py   one RM's session: handshake, details, control type, FRBC state, instructions
instructions.py  a wanted power -> an FRBC operation mode and factor (pure)
server.py    the WebSocket server (aiohttp): tokens, TLS, rate limits, the instruction loop
listing.py   ``edge-agent s2 list``: the status file the server keeps in state_dir
component.py the server as a component of the agent (the plan, grid reading and limits it follows)
"""
