"""splitee: early-exit DNN inference split between edge and cloud, with online split selection."""

__version__ = "0.1.0"
