"""tracelake querier service."""
