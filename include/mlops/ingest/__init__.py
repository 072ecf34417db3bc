"""Ingestion: the upstream simulator, landing drops, GX validation, quarantine and curation."""
