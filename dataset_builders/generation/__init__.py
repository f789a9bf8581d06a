"""LLM generation for the translated and synthetic splits: backends, the response cache, prompts."""
