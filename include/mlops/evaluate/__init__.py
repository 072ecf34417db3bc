"""Evaluation: the gate that judges a candidate against the champion."""
