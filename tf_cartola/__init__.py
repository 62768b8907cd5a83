"""tf_cartola: CSV -> validated, transformed data -> served TensorFlow model for Cartola PRO."""

import os

# tf.Transform's layer is a Keras 2 object: TF must pick tf_keras, and it decides at its
# first import. Every entry point imports this package before TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
