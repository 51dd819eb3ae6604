"""The README's option table, generated from ``config.OPTIONS`` (``python -m sharedsock.docs``).

A test compares the README with this output, so the documentation cannot
drift from what the server accepts.
"""

from __future__ import annotations

from .config import OPTIONS


def options_markdown() -> str:
    lines = []
    section = None
    for option in OPTIONS:
        if option.section != section:
            section = option.section
            lines += ["", f"**{section}**", "", "| flag | environment | default | meaning |",
                      "|---|---|---|---|"]
        flag = option.flag + ("" if option.is_flag else f" {option.metavar}")
        if option.short:
            flag = f"{option.short}, {flag}"
        if option.is_flag:
            flag += f" / --no-{option.flag[2:]}"
        meaning = option.help.replace("|", "\\|")
        lines.append(f"| `{flag}` | `{option.env}` | {option.describe_default()} | {meaning} |")
    return "\n".join(lines[1:]) + "\n"


if __name__ == "__main__":
    print(options_markdown(), end="")
