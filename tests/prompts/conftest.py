# The gateway suite's servers and tenant: one daphne process (serving both the
# proxy and the REST API) with its upstreams pointed at the mock provider.
from tests.gateway.conftest import gateway, mock_provider, tenant  # noqa: F401
