"""devchain."""
