"""Model backends: the Backend protocol, the built-in kinds (llama.cpp in-process, OpenAI-compatible HTTP) and the fleet registry."""
