"""Which blocks a tenant has: the tenant index, and listing the bucket when the index will not do."""
