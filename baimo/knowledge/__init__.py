"""Knowledge bases: parse uploaded files, chunk them, embed and retrieve passages to ground answers."""
