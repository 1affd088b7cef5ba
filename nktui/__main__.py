"""`python -m nktui`: the same as the `nktui` command."""

from nktui.cli import main

raise SystemExit(main())
