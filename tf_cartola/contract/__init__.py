"""The contract every stage agrees on: the raw columns and transformed names (`features`), the cell
rule (`rows`), the deterministic split, the names serving uses (`signatures`), the run configs
(`config`) and the preprocessing output later stages read (`manifest`).
"""
