"""The runtime: tasks (one per input partition) driving probe -> reassembly -> decoders,
with state in stores, fed by a replay driver (embedded) or a Kafka driver (consumer group)."""
