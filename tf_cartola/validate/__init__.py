"""Validating data: TFDV anomalies and their table (`validation`), drift and skew tests with a
known false-alarm rate (`drift`), the baseline a model was trained on (`baseline`), and the checks
of rows about to be scored against the served model's schema (`scoring_checks`).
"""
