"""Apache Beam jobs of tf_cartola."""
