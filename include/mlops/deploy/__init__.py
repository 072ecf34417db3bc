"""Deployment: the canary / A-B rollout and its decision."""
