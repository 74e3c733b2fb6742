"""The wire formats every way a log comes in shares: the `Helicone-*` header grammar
(headers.py), provider detection and the SSRF rules for client-chosen URLs (providers.py),
usage and stream parsing and assembly (usage.py).

Below prompts, analytics and the gateway, above orgs (the foundation); not a Django app (no
models, no URLs). The proxy, the manual log and the ingest APIs all parse through it.
"""
