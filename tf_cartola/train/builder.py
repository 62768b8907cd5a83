"""The Keras (tf_keras) logistic model: a pure builder over transformed feature names."""

import typing

import tf_keras

from tf_cartola.contract import config as config_lib

# Training steps per call of the compiled step: the same updates in the same order (the same
# weights, bit for bit), without Python between steps, which a model of seven weights spends most
# of its time in (bench/pipeline.py: fitting took half the time).
STEPS_PER_EXECUTION = 64


def build(feature_names: typing.Sequence[str], hparams: config_lib.TrainConfig) -> tf_keras.Model:
    """A compiled logistic regression: one [batch, 1] float input per feature -> PRO probability.

    Args:
      feature_names: transformed (z-scored) feature names, in the order the weights are kept.
      hparams: optimizer, learning rate and L2 penalty.

    Returns:
      A compiled tf_keras.Model whose output is named `pro_probability`.
    """
    inputs = {name: tf_keras.Input(shape=(1,), name=name) for name in feature_names}
    stacked = (
        tf_keras.layers.Concatenate(name="features")(list(inputs.values()))
        if len(inputs) > 1
        else next(iter(inputs.values()))
    )
    regularizer = tf_keras.regularizers.l2(hparams.l2) if hparams.l2 else None
    output = tf_keras.layers.Dense(
        1, activation="sigmoid", kernel_regularizer=regularizer, name="pro_probability"
    )(stacked)
    model = tf_keras.Model(inputs=inputs, outputs=output, name="cartola_pro_logistic")
    optimizer = tf_keras.optimizers.get(
        {"class_name": hparams.optimizer, "config": {"learning_rate": hparams.learning_rate}}
    )
    # No metric but the loss while fitting: early stopping watches the eval loss, and evaluation
    # measures the trained model exactly afterwards (a streaming AUC per step cost a third of
    # the fit).
    model.compile(
        optimizer=optimizer, loss="binary_crossentropy", steps_per_execution=STEPS_PER_EXECUTION
    )
    return model


def _leave_tf_keras_to_itself() -> None:
    """Stops AutoGraph from transpiling tf_keras, as it already leaves `keras` alone.

    TF 2.16's AutoGraph skips modules named `keras` but not `tf_keras`, so `fit` transpiled
    tf_keras's training loop (13 s before the first step) and `model.save` its call path
    for the default signature (3 s). tf_keras is the Keras 2 code that always runs
    unconverted under the name `keras`: same graphs, same weights.
    """
    from tensorflow.python.autograph.core import config as autograph_config

    autograph_config.CONVERSION_RULES = (
        autograph_config.DoNotConvert("tf_keras"),
        *autograph_config.CONVERSION_RULES,
    )


# Once, when the model module is first imported: before any model is traced.
_leave_tf_keras_to_itself()
