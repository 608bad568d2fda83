"""Simulated cameras that push JPEG frames (and ground truth for evaluation) into Kafka."""
