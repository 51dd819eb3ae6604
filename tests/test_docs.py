"""The README's option table is generated from the single option declaration."""

from pathlib import Path

from sharedsock.docs import options_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_option_table_matches_declarations():
    text = README.read_text()
    table = text.split("<!-- options:start -->\n", 1)[1].split("<!-- options:end -->", 1)[0]
    assert table == options_markdown(), "run: python -m sharedsock.docs and paste into README.md"
