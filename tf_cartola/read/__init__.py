"""Reading the data: CSV files as typed Arrow batches (malformed rows set aside), PostgreSQL as a
source of users and a sink of scores, tf.Examples and TFRecords, TF Serving prediction logs, and
the seeded synthetic generator (`python -m tf_cartola.read.synthetic`).
"""
