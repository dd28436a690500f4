"""Feature logic shared by the CLI and the bot: one module per command family."""
