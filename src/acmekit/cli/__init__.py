"""The command line: the only code that reads argv or the environment."""
