"""tagshift: transfer learning for named entity recognition."""

__version__ = "0.1.0"
