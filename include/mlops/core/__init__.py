"""The floor every stage stands on: settings, the lake and its layout, the data sets' schema, metrics, the registry, reference profiles, the prediction log, the rollout's state, alerts, reports."""
