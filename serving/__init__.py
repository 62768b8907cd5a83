"""Serving: TF Serving config, clients (REST and gRPC), and a TF-Serving-compatible local
server.
"""
