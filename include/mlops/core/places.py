"""The lake's folder names that no model's folder may take (``core.layout`` builds every path from them; the model
declaration checks a model's ``lake:`` folder against them, without importing the layout)."""

ZONES = ("landing", "staging", "curated", "quarantine")  # the data sets' zones
MODEL_PLACES = ("training", "predictions", "reports", "deployments", "audit")  # what a model's folder holds
