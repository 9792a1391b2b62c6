"""YAML specs: reading with positions, defaults, validation into typed models."""
