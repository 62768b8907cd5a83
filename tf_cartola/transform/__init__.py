"""The tf.Transform `preprocessing_fn`: the data scientists' feature engineering as a TF graph."""
