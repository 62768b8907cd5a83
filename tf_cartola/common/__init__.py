"""What every stage uses and nothing of the pipeline: files on any filesystem, stage timing and
progress, loopback ports, and what every command line does first (`cli`).
"""
