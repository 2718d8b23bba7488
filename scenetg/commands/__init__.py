"""The `scenetg` commands, one module per job, each registering on `scenetg.commands.app.app`."""
