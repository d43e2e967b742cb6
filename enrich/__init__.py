"""`wirestream enrich`: a non-blocking enrichment stage between two Kafka topics.

Records (e.g. `http`) are read from an input topic, each is looked up on an HTTP service
(URL built from the record's fields), and goes out to the output topic with the answer
(`enrichment`) or the reason it has none (`enrichment_error`). asyncio + aiohttp keep
hundreds of lookups in flight on one thread; kafka-python's blocking clients run on
their own threads. See docs/enrich.md.

Modules: template (URL from a record), cache (TTL cache), ordering (per-key order,
committable offsets), lookup (HTTP with timeouts, retries, single-flight), record (the
output record), stage (the asyncio pipeline), kafka_io (the thread bridge), cli.
"""
