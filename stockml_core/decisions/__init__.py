"""What the platform decides on its own: promote a candidate, retrain on drift.

``promotion`` is the gate, every criterion with its value and threshold; ``drift`` scores the day's
feature, regime and prediction drift and holds the retraining policy; ``canary`` checks the gate on
synthetic markets with a known amount of signal.
"""
