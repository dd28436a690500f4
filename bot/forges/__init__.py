"""The forges imglife lives on: webhook parsing (pure) and, later, their API clients."""
