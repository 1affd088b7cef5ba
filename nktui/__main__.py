"""`python -m nktui`: the same as the `nktui` command."""

from nktui.cli import run

run()
