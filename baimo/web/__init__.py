"""The web chat UI: static HTML, JS and CSS served by the API app (no build step)."""
