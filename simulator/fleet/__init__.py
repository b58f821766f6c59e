"""Fleet simulation and evaluation: scenarios, strategies, fast and live modes, reports."""
