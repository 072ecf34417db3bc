"""The prediction service: champion and, during a rollout, challenger behind one HTTP API."""
