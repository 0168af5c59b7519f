"""Resumable, parallel evaluation campaigns: many exact queries, each result stored durably.

:func:`run_campaign` runs a worker function on every query not yet in a JSONL store, in
worker processes with a hard-timeout watchdog, and appends each record (fsync'ed) as soon
as it is known; running it again resumes. :func:`load_results` and :func:`results_table`
read and summarise a store. Built-in workers for the exact queries are in :mod:`.tasks`.
"""

from .pool import CampaignError
from .runner import (
    DEFAULT_CRASH_RETRIES,
    DEFAULT_HARD_TIMEOUT_FACTOR,
    DEFAULT_HARD_TIMEOUT_GRACE,
    FAILED_STATUSES,
    query_id,
    run_campaign,
    unknown_under,
)
from .store import StoreError, TornRecordWarning, encode_record, load_results, repair_store
from .summary import format_table, results_table

__all__ = [
    "CampaignError", "DEFAULT_CRASH_RETRIES", "DEFAULT_HARD_TIMEOUT_FACTOR", "DEFAULT_HARD_TIMEOUT_GRACE",
    "FAILED_STATUSES", "StoreError", "TornRecordWarning", "encode_record", "format_table", "load_results",
    "query_id", "repair_store", "results_table", "run_campaign", "unknown_under",
]
