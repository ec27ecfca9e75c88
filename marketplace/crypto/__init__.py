"""Keys (keystore files), encrypted envelopes and signed announcements."""
