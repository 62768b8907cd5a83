"""Scoring users with a model version, as both scoring commands do it: `serving.client` (through a
served model's clients, or in-process) and `beam_jobs.score` (a Beam job).

- `models`: which version scores (the served one by default) and the schema it carries;
- `batches`: a typed batch checked against that schema (rows set aside with their reasons), its
  ids, the quarantine, and a run streamed through a client;
- `sinks`: where the ranked scores go, a CSV file or a scores table.
"""
