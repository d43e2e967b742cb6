"""Protocol decoders: sans-IO plugins fed with reassembled stream events, emitting records."""
