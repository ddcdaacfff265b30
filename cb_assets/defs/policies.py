"""Policies shared by the domains: how infrastructure failures are retried, and how a
configuration error stops a step without a retry."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError

from cb_assets import config
from cb_assets.shared.failures import CONFIG_ERROR, MAX_ATTEMPTS, Verdict, config_error_text

# Only infrastructure failures raise a retryable exception: an agent that fails on
# its own merits is a result, and bad input cannot be fixed by retrying.
INFRA_RETRY = dg.RetryPolicy(
    max_retries=MAX_ATTEMPTS - 1,
    delay=config.retry_delay_seconds(),
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)


def is_last_attempt(context: dg.AssetExecutionContext) -> bool:
    return context.retry_number >= MAX_ATTEMPTS - 1


def give_up_or_retry(
    context: dg.AssetExecutionContext, error: Exception, final_description: str, **failure_kwargs
) -> Exception:
    """What to raise for an infrastructure failure: `error`, which INFRA_RETRY retries, while
    attempts remain; on the last one a non-retryable Failure saying it gave up."""
    if is_last_attempt(context):
        return dg.Failure(description=final_description, allow_retries=False, **failure_kwargs)
    return error


def config_failure(verdict: Verdict, **failure_kwargs) -> dg.Failure:
    """The non-retryable Failure for a config error; its text starts with `config_error:`,
    which `cb-assets` reads to stop launching further pair-runs."""
    metadata = {"classification": CONFIG_ERROR, "rule": verdict.rule}
    metadata.update(failure_kwargs.pop("metadata", {}))
    return dg.Failure(
        description=config_error_text(verdict),
        allow_retries=False,
        metadata=metadata,
        **failure_kwargs,
    )


CANCELLED = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)


@contextmanager
def cancellation_ends_the_step(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Dagster retries an interrupted step under its RetryPolicy (a preempted worker deserves
    another go). A run cancelled from the UI, or by `cb-assets` on Ctrl-C, is interrupted the
    same way and must stop instead: the step fails, not retried."""
    try:
        yield
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        run = context.instance.get_run_by_id(context.run.run_id)
        if run is not None and run.status in CANCELLED:
            raise dg.Failure(description="the run was cancelled", allow_retries=False) from None
        raise
