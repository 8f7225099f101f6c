"""The worker's HTTP door: limits, connection guard, evaluation off the event loop."""
