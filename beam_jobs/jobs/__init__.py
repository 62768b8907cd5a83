"""Each Beam job as a library: `preprocess.preprocess`, `validate.validate` and `score.score` run
their pipeline and return its manifest; they print nothing and render nothing.
"""
