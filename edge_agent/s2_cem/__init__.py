"""The edge agent as an S2 CEM (EN 50491-12-2): third-party Resource Managers connect over
WebSocket (docs/s2-cem.md).

wire.py      one frame -> a validated S2 message (s2-python's parser) or a ReceptionStatus refusal
state.py     immutable per-RM snapshots and the coordinator that publishes them
session.py   one RM's session: handshake, details, control type, FRBC state, instructions
take.py      what the session takes from PPBC, OMBC and PEBC RMs (pure)
decide.py    one round of the instruction loop for one RM, per control type, as S2 messages
instructions.py  FRBC: a wanted power -> an operation mode and factor (pure)
ppbc.py      PPBC: a power profile's start (cheapest allowed, or the aggregator's) and its run (pure)
ombc.py      OMBC: operation modes within the site limits and the RM's timers (pure)
pebc.py      PEBC: a power envelope that keeps the export cap (pure)
flexibility.py  the connected OMBC and PPBC RMs as flexibility for the fleet (pure)
server.py    the WebSocket server (aiohttp): tokens, TLS, rate limits, the instruction loop
listing.py   ``edge-agent s2 list``: the status file the server keeps in state_dir
component.py the server as a component of the agent (the plan, grid reading, limits, prices, forecast)
"""
