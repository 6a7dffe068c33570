"""steering-reliability: does a linear refusal direction generalise, and what does it cost?"""

__version__ = "0.1.0"
