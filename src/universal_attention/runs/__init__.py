"""Runs on disk: safetensors checkpoints, run folders (marker, lock, rotation), loading a start point, loggers."""
