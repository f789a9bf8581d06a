"""TRL YAML configs, one per training mix; read by TrlParser."""
