"""Sans-IO TCP reassembly and flow tracking.

Fed parsed packets (probe.packet.Packet) and flow keys, it calls a per-flow stream
consumer with in-order bytes and gaps per direction, and reports flow lifecycle. No I/O:
the runtime (streams/) persists its state through snapshots.
"""
