"""Evaluation: metrics with bootstrap intervals, slices, deciles and the paired comparison with the
served model (`evaluation`), each metric defined once (`metrics`), the slices (`slices`).
"""
