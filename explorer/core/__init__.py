"""The sampling engine: torch + numpy only, never Qt."""
