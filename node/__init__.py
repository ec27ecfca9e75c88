"""The FedMarket peer process and the ``fedmarket`` command line."""
