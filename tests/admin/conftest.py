# The gateway fixtures (a daphne process with the mock provider upstream, a tenant).
from tests.gateway.conftest import gateway, mock_provider, tenant  # noqa: F401
