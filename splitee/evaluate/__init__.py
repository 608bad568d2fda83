"""Offline evaluation: exit outputs, vectorised policy replay, scoring and reports."""
