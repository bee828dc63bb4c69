"""Publishing messages to topics: in-process (LocalBus) now, Redis for several nodes later."""
