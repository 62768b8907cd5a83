"""The Apache Beam jobs: `preprocess`, `validate` and `score` are their command lines (flags, what
they print, exit statuses); `jobs` holds each job as a library function that returns its manifest,
and `shared` the transforms, inputs, outputs, counters and worker checks the jobs share.
"""
