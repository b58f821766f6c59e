"""The house in Home Assistant: MQTT discovery (entities.py), energy counters for the Energy
dashboard (energy.py), commands from Home Assistant (commands.py) and the MQTT task (bridge.py)."""
