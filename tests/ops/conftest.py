from tests.gateway.conftest import mock_provider, tenant  # noqa: F401  (the gateway tests' fixtures)
