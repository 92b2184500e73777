"""Exports: tagshift models in other tools' formats (spaCy pipelines)."""
