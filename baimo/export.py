"""Render a stored conversation as Markdown (for `baimo conversations export` and the API's export route)."""

from __future__ import annotations

from typing import Any


def conversation_markdown(conv: dict[str, Any]) -> str:
    lines = [f"# {conv['title']}", "", f"- id: `{conv['id']}`", f"- created: {conv['created_at']}", ""]
    for m in conv["messages"]:
        head = f"## {m['role']}"
        if m["role"] == "assistant" and m.get("model"):
            meta = [m["model"]]
            if m.get("tokens_out") is not None:
                meta.append(f"{m['tokens_in']} → {m['tokens_out']} tokens")
            if m.get("latency_ms") is not None:
                meta.append(f"{m['latency_ms']:.0f} ms")
            if m.get("cost"):
                meta.append(f"${m['cost']:.6f}")
            if m.get("status") != "complete":
                meta.append(m["status"])
            head += f" ({', '.join(meta)})"
        lines += [head, "", m["content"], ""]
    return "\n".join(lines).rstrip() + "\n"
