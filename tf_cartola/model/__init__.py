"""The model: the Keras builder, the training run, the SavedModel export, serving names and requests,
in-process scoring and the version store."""
