"""Data sources: the synthetic Cartola generator."""
