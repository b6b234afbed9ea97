"""tracelake compactor service."""
