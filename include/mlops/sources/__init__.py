"""Upstream sources: how drops land in the lake (the simulator) and how ingestion reads them (landing)."""
