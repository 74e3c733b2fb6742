"""Raw ASGI entry of the proxy hot path (placeholder until the gateway lands)."""


class GatewayRouter:
    def __init__(self, fallback):
        self.fallback = fallback

    async def __call__(self, scope, receive, send):
        await self.fallback(scope, receive, send)
