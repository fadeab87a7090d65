"""movierec model server: a ``kserve.Model`` served by ``kserve.ModelServer`` (see
docs/model_server.md)."""
