"""Ingestion: landing drops, GX validation, quarantine and curation."""
