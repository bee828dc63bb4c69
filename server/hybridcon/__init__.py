"""hybridcon: the streaming and engagement backend of a hybrid conference."""

__version__ = "0.1.0"
