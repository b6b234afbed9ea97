"""What every block format version shares: its object names and its ``meta.json``."""
