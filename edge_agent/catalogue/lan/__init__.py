"""LAN device maps as data: one TOML file per model (see edge_agent.drivers.lan_catalogue)."""
