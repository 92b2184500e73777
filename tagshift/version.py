"""The version of tagshift, in a module of its own so that any module can read it without
importing the package's front (which loads models)."""

__version__ = "0.1.0"
