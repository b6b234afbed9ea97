"""The RPC between the roles: distributor -> ingesters (push) and querier -> ingesters (recent data)."""
