"""The `kubetune` command line: one module per command (see main.COMMANDS)."""
