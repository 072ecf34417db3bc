"""Monitoring: drift statistics, live performance, the daily report and its firing rule."""
