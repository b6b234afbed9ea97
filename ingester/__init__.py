"""tracelake ingester service."""
