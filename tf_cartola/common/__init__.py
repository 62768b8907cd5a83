"""What every stage uses and nothing of the pipeline: files on any filesystem, stage timing and
progress, loopback ports and a throwaway PostgreSQL server on one (`local_postgres`), and what
every command line does first and last (`cli`).
"""
