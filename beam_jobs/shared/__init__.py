"""What the Beam jobs share: their inputs (checked and fingerprinted), output layout, counters, the
Beam composites (read, type, split, quarantine, write) and the check of a portable runner's
workers.
"""
