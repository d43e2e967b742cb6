"""How the member classifies errors: rewind and retry, let a rebalance sort it out, or stop.

Shared by the poll loop, the commit protocol and the rebalance callbacks, so that each of
them reacts to the same failure the same way.
"""

from __future__ import annotations

from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    ProducerFencedError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from wirestream.streams.kafka.restore import RestoreError
from wirestream.streams.kafka_topics import TopicError


class FatalError(Exception):
    """The member cannot go on safely (a produce failed for good, state unusable)."""


# Errors that mean "the brokers are failing" rather than "this member is wrong": rewind to
# the last commit, back off, retry.
BROKER_ERRORS = (KafkaError, TopicError, RestoreError)
# A commit refused because the group is rebalancing: no outage; the partitions are
# revoked and committed again (or lost) in the rebalance that follows.
REBALANCE_ERRORS = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
# ... or because another member owns the partition now (exactly-once).
OWNERSHIP_ERRORS = (*REBALANCE_ERRORS, ProducerFencedError)
