"""A local Stripe API emulator for tests and benchmarks (not part of the product package).

    handle = start_emulator(latency_ms=(100, 300), rate_limit=25)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": handle.url})

See stripe_emulator/README.md for what it emulates and how it differs from Stripe.
"""

from .config import ENDPOINTS, STRIPE_TEST_LIMITS, EmulatorConfig
from .handle import EmulatorError, EmulatorHandle, start_emulator
from .server import EmulatorServer

__all__ = [
    "ENDPOINTS",
    "STRIPE_TEST_LIMITS",
    "EmulatorConfig",
    "EmulatorError",
    "EmulatorHandle",
    "EmulatorServer",
    "start_emulator",
]
