"""Forecasting the repository's size under a retention policy, and its chart."""
