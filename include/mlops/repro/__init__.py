"""Changing the model before it merges (DVC's pipeline, ``dvc.yaml``): the stages call the very functions the DAGs
run, on a snapshot of curated days instead of the live lake.

``stages``  snapshot (the declared sources' days through ingestion's own steps), train (the training-set builder
            and the training function of ``train_model``), evaluate (metrics, plot data, the gate's own rules)
``report``  ``make report``: the branch's model against the default branch's on the same held-out days, with the
            metrics and parameters diff, as ``report.md``
"""
