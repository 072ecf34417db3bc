"""Monitoring: drift statistics (``drift``), the reference profile kept with each model version (``profile``),
live performance from predictions joined with later outcomes (``performance``) and the daily report with its
firing rule (``monitor``)."""
