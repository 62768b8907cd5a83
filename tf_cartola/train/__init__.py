"""Training: the Keras logistic model (`builder`), its metrics (KS first) and the training run that
fits, evaluates, blesses and pushes (`training`); `python -m tf_cartola.train` is its command
line.
"""
