"""Policies shared by the domains: how infrastructure failures are retried."""

import dagster as dg

from cb_assets import config

MAX_ATTEMPTS = 3

# Only infrastructure failures raise a retryable exception: an agent that fails on
# its own merits is a result, and bad input cannot be fixed by retrying.
INFRA_RETRY = dg.RetryPolicy(
    max_retries=MAX_ATTEMPTS - 1,
    delay=config.retry_delay_seconds(),
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)
