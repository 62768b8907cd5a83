"""Writing what the pipeline makes where a reader would not look for it: the scores sink in
PostgreSQL (a run's scores upserted one batch per transaction).
"""
