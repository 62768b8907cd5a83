"""Names every side of serving agrees on: signatures, method names, outputs, the warmup file.
TF-free, so clients that only speak HTTP do not load TensorFlow to read them.
"""

DEFAULT_SIGNATURE = "serving_default"
RAW_SIGNATURE = "predict_raw"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PROBABILITY = "pro_probability"
CLASS_LABELS = ("0", "1")
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
