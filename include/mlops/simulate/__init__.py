"""The upstream simulator: the stand-in for a real upstream system and the prediction service's clients, replaying
the 2013 reference data. ``plan``: the fault kinds, the source's days and a simulation's days; ``upstream``: one
drop into ``landing/``; ``traffic``: a day's flights as prediction requests; ``simulator``: a range of days with
faults and traffic, and the scheduled replay's turn. It drives ingestion and the prediction service from outside:
no stage imports it, and a real deployment never runs it."""
