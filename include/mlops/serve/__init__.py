"""Serving: the prediction API and the models it routes between."""
