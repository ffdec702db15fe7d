"""Verifying a repository: structure, the index survey, and reading every byte."""
