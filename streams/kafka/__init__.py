"""`wirestream run`: one member of a Kafka consumer group, built of parts (see runtime.py)."""
