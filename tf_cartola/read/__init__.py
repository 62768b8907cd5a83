"""Reading the data: CSV files as typed Arrow batches (malformed rows set aside), PostgreSQL as a
source of users (and of a run's scores, for the backtest), tf.Examples and TFRecords, TF Serving
prediction logs, a scoring run's CSV.
"""
