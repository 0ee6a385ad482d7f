"""tracer: follow flagged cryptocurrency hop by hop to the off-ramps where it cashes out."""

__version__ = "0.1.0"
