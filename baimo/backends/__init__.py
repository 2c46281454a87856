"""Model backends: the Backend protocol, the built-in kinds (llama.cpp, OpenAI-compatible HTTP) and the registry."""
