"""Block format versions, one package each (as Tempo's ``encoding/<version>/``)."""
