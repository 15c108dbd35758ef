"""``python -m greeter_core``: the same as the ``greeter`` command."""

from .cli import main

raise SystemExit(main())
