"""Capture side: read captures, parse L2-L4, defragment IP, key flows, encode packet records.

Knows nothing of reassembly or decoding. Everything here is sans-IO except `capture`,
which reads files.
"""
