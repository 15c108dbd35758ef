"""``python -m greeter_core.worker FD``: started by the host, never by hand."""

from .main import main

raise SystemExit(main())
