"""Cost of a call in USD: operator overrides (ModelPrice) first, then genai-prices.

genai-prices is used with its bundled data only; nothing is fetched at run time.
A model with no price costs None ("unpriced"), never 0. Embeddings are priced by
their input tokens (they report no output).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from django.db.models import Count, Max, Q
from genai_prices import Usage, calc_price

from .models import ModelPrice

MTOK = Decimal(1_000_000)
TEN_DIGITS = Decimal("0.0000000001")  # a cost's precision, as the columns keep it

# Unpriced: a call with token usage whose model has no price. Calls without usage (models.list,
# Anthropic's count_tokens, files...) have nothing to price and are not unpriced.
UNPRICED = Q(cost_usd__isnull=True) & (Q(prompt_tokens__isnull=False) | Q(completion_tokens__isnull=False))
_overrides: dict[tuple[str, str], ModelPrice] = {}
_overrides_version: tuple | None = None

# Our provider names -> genai-prices provider ids (None: match on the model).
_PROVIDER_IDS = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "together": "together",
    "groq": "groq",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "fireworks": "fireworks",
    "xai": "x-ai",
    "gemini": "google",
}


def refresh_overrides() -> None:
    """Re-read ModelPrice when it changed. The log writer calls this once per batch,
    so an operator's price applies from the next batch on (one cheap query)."""
    global _overrides, _overrides_version
    version = tuple(ModelPrice.objects.aggregate(n=Count("id"), latest=Max("updated_at")).values())
    if version != _overrides_version:
        _overrides = {(p.provider, p.model): p for p in ModelPrice.objects.all()}
        _overrides_version = version


def cost_usd(
    provider: str,
    model: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cached_tokens: int | None = None,
    cache_write_tokens: int | None = None,
) -> Decimal | None:
    if not model or (prompt_tokens is None and completion_tokens is None):
        return None
    prompt = prompt_tokens or 0
    completion = completion_tokens or 0
    cached = min(cached_tokens or 0, prompt)
    overrides = _overrides
    override = (overrides.get((provider, model)) or overrides.get(("", model))) if overrides else None
    if override is not None:
        cached_price = override.cached_input_per_mtok
        if cached_price is None:
            cached_price = override.input_per_mtok
        total = (
            (prompt - cached) * override.input_per_mtok
            + cached * cached_price
            + completion * override.output_per_mtok
        ) / MTOK
        return total.quantize(TEN_DIGITS)
    return _bundled_cost(provider, model, prompt, completion, cached, cache_write_tokens or 0)


def _bundled_cost(provider: str, model: str, prompt: int, completion: int, cached: int,
                  cache_write: int) -> Decimal | None:
    rates = _flat_rates(provider, model)
    if rates is None:
        return None
    if rates:
        # Flat prices: plain arithmetic (genai-prices' general path costs ~170 µs a call).
        input_rate, output_rate, read_rate, write_rate = rates
        total = ((prompt - cached - cache_write) * input_rate + cached * read_rate + cache_write * write_rate
                 + completion * output_rate) / MTOK
    else:  # tiered prices
        usage = Usage(input_tokens=prompt, output_tokens=completion, cache_read_tokens=cached or None,
                      cache_write_tokens=cache_write or None)
        total = Decimal(_bundled_price(provider, model).calc_price(usage)["total_price"])
    return total.quantize(TEN_DIGITS)


@lru_cache(maxsize=2048)
def _flat_rates(provider: str, model: str) -> tuple[Decimal, Decimal, Decimal, Decimal] | tuple[()] | None:
    """A model's (input, output, cache read, cache write) prices per million tokens when they are
    flat, a cache read or write without a price of its own at the input's; () for tiered prices,
    None for an unpriced model. Per model, once: the writer prices every log it writes."""
    price = _bundled_price(provider, model)
    if price is None:
        return None
    rates = (price.input_mtok, price.output_mtok, price.cache_read_mtok, getattr(price, "cache_write_mtok", None))
    if not all(rate is None or isinstance(rate, Decimal) for rate in rates):
        return ()
    input_rate = rates[0] or Decimal(0)
    return (input_rate, rates[1] or Decimal(0), input_rate if rates[2] is None else rates[2],
            input_rate if rates[3] is None else rates[3])


@lru_cache(maxsize=2048)
def _bundled_price(provider: str, model: str):
    usage = Usage(input_tokens=1, output_tokens=1)
    for provider_id in dict.fromkeys((_PROVIDER_IDS.get(provider), None)):
        try:
            return calc_price(usage, model_ref=model, provider_id=provider_id).model_price
        except LookupError:
            continue
    return None


def load_tables() -> None:
    """Load genai-prices' bundled data now rather than at the first priced log
    (about 20,000 objects; the web process loads them before it freezes its
    start-up objects, see heliconeproj/asgi.py)."""
    try:
        calc_price(Usage(input_tokens=1, output_tokens=1), model_ref="gpt-4o-mini", provider_id="openai")
    except LookupError:
        pass
