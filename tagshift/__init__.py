"""tagshift: transfer learning for named entity recognition.

    >>> import tagshift
    >>> callable(tagshift.load) and callable(tagshift.save)
    True
"""

from tagshift.bundle import load, save
from tagshift.version import __version__

__all__ = ["__version__", "load", "save"]
