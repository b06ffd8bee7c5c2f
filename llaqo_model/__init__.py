"""LLaQo: score-informed piano performance analysis and the LLaQo assessment model."""

__version__ = "0.1.0"
