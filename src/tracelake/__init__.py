"""tracelake core library."""
