"""Built-in stores and executors, one module per thing they talk to."""
