"""Vendor register maps as data: one TOML file per device model (see edge_agent.drivers.catalogue)."""
